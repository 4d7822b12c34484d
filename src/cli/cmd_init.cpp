// lora init: a new model of one of the families (model/family.h; Llama by default) with random weights (Hugging Face's N(0, 0.02)
// initializer) and a given tokenizer, written as a Hugging Face folder: the starting point for
// training from scratch with `lora train --finetuning-type full`. With --shape it takes the architecture
// of a published model (for benchmarks), and with --quantize its linear layers are created directly in
// bitsandbytes' quantized form, so a Llama-2-7B-shaped QLoRA base never exists in full precision.
#include <cmath>
#include <optional>
#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "data/chat_template.h"
#include "formats/model_loader.h"
#include "model/family.h"
#include "model/quantize_model.h"
#include "model/random_model.h"
#include "tokenizer/tokenizer.h"

namespace lora::cli {

namespace {

struct InitOptions {
  std::string output, tokenizer, template_name, shape, quantize, dtype = "f32", arch = "llama";
  int64_t head_dim = 0;  // 0: hidden_size / heads
  int64_t sliding_window = 0;  // 0: the family's default (Gemma 3: 512, Gemma 2: 4096; Phi-3: none)
  int64_t longrope_original = 0;  // Phi-3: LongRoPE from this original context (0: plain RoPE)
  int64_t rotary_dim = 0;         // Phi-3: RoPE on this many values of each head (0: all)
  std::optional<float> attn_softcap, final_softcap;  // none: the family's (Gemma 2: 50 and 30)
  bool rope_theta_given = false;
  bool no_double_quant = false;
  ModelConfig config;
  int64_t seed = 42;
};

// --arch takes a model_type or a GGUF architecture name (gemma3 for gemma3_text).
const ModelFamily& init_family(const std::string& arch) {
  if (const ModelFamily* f = family_by_model_type(arch)) return *f;
  if (const ModelFamily* f = family_by_gguf_arch(arch)) return *f;
  return model_family(arch);  // throws, naming the known ones
}

// LongRoPE factors of the shape Phi-3.5's have (1 for the fast frequencies, growing towards the slow ones; the
// long ones further), for a model of head_dim (or hidden / heads) whose original context is `original`.
void set_test_longrope(ModelConfig& c, int64_t original, int64_t head_dim) {
  const int64_t d = head_dim > 0 ? head_dim : c.hidden_size / c.num_attention_heads, half = d / 2;
  RopeScaling& rs = c.rope_scaling;
  rs.type = "longrope";
  rs.short_factor.clear();
  rs.long_factor.clear();
  for (int64_t i = 0; i < half; ++i) {
    const double t = double(i) / double(std::max<int64_t>(half - 1, 1));
    rs.short_factor.push_back(float(1.0 + 0.5 * t * t));
    rs.long_factor.push_back(float(1.0 + 7.0 * t * t));
  }
  rs.original_max_position_embeddings = original;
  rs.factor = float(double(c.max_position_embeddings) / double(original));
  rs.attention_factor = longrope_attention_factor(c.max_position_embeddings, original);
}

void run_init(InitOptions o) {
  if (o.shape.empty()) {  // the family's own switches; the sizes come from the options
    const ModelFamily& f = init_family(o.arch);
    apply_family(f, o.config);
    if (!o.rope_theta_given) o.config.rope_theta = float(f.default_rope_theta);
    if (!f.local_rope_base) o.config.rope_local_base_freq = o.config.rope_theta;  // (Gemma 2: one RoPE base)
    if (f.gemma_block) o.config.rms_norm_eps = 1e-6f;
    if (o.sliding_window > 0) o.config.sliding_window = o.sliding_window;
    if (f.fused_linears && o.sliding_window > 0)  // (Phi-3's window covers every layer)
      o.config.layer_types.assign(size_t(o.config.num_hidden_layers), "sliding_attention");
    if ((o.longrope_original > 0 || o.rotary_dim > 0) && !f.fused_linears)
      fail("--longrope and --rotary-dim are for Phi-3 (--arch phi3)");
    o.config.rotary_dim = o.rotary_dim;
    if (o.longrope_original > 0) set_test_longrope(o.config, o.longrope_original, o.rotary_dim > 0 ? o.rotary_dim : o.head_dim);
    if ((o.attn_softcap || o.final_softcap) && f.default_attn_softcap == 0)
      fail("--attn-softcap and --final-softcap are for Gemma 2 (the family of --arch {} caps nothing)", o.arch);
    if (o.attn_softcap) o.config.attn_logit_softcapping = *o.attn_softcap;
    if (o.final_softcap) o.config.final_logit_softcapping = *o.final_softcap;
  } else {
    o.config = model_config_by_name(o.shape);
  }
  std::shared_ptr<Tokenizer> tok = load_tokenizer(o.tokenizer);
  if (!o.template_name.empty()) tok->set_chat_template(chat_template(o.template_name).jinja);
  ModelConfig& c = o.config;
  c.vocab_size = tok->vocab_size();
  c.bos_token_id = tok->bos_id();
  c.eos_token_id = tok->eos_id();
  if (c.num_key_value_heads == 0) c.num_key_value_heads = c.num_attention_heads;
  if (o.shape.empty()) {
    if (o.head_dim == 0 && c.hidden_size % c.num_attention_heads != 0)
      fail("--hidden-size {} is not a multiple of --heads {} (or give --head-dim)", c.hidden_size, c.num_attention_heads);
    c.head_dim = o.head_dim > 0 ? o.head_dim : c.hidden_size / c.num_attention_heads;
    if (c.gemma_block) c.query_pre_attn_scalar = float(c.head_dim);  // as the published Gemma 2 2B/9B, Gemma 3 1B-12B
  }
  c.validate("lora init");
  const DType dtype = dtype_from_name(o.dtype);
  Model m = o.quantize.empty()
                ? random_model(c, uint64_t(o.seed), dtype)
                : random_quantized_model(c, uint64_t(o.seed),
                                         QuantConfig{quant_type_from_name(o.quantize), !o.no_double_quant && o.quantize != "int8"},
                                         dtype);
  m.tokenizer = tok;
  save_hf_folder(m, o.output);
  std::string quantized;
  if (!o.quantize.empty())
    quantized = fmt::format(", linear layers in {} ({:.3f} bits/weight)", o.quantize, quant_summary(m).bits_per_weight);
  fmt::print("{}: a new {} model with random weights: {} layers, hidden {}, {} heads ({} key/value), vocab {}, context {}, "
             "{} parameters{}{}\n",
             o.output, c.model_type, c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.vocab_size,
             c.max_position_embeddings, m.parameter_count(), quantized,
             o.template_name.empty() ? "" : fmt::format(", chat template {}", o.template_name));
}

}  // namespace

void register_init(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "init", "Create a model with random weights (a Hugging Face folder) to train from scratch");
  auto o = std::make_shared<InitOptions>();
  ModelConfig& c = o->config;
  c.hidden_size = 128;
  c.intermediate_size = 344;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.max_position_embeddings = 512;
  c.tie_word_embeddings = true;
  cmd->add_option("-o,--output", o->output, "folder to write (config.json, model.safetensors, tokenizer files)")->required();
  cmd->add_option("--tokenizer", o->tokenizer,
                  "tokenizer the model will use (tokenizer.json, tokenizer.model, llama2.c .bin, .gguf, or a folder)")
      ->required();
  cmd->add_option("--template", o->template_name,
                  fmt::format("chat template recorded in tokenizer_config.json ({}; default: the tokenizer's own)",
                              fmt::join(chat_template_names(), ", ")));
  cmd->add_option("--arch", o->arch, fmt::format("model family: {}", supported_model_types()))
      ->capture_default_str()
      ->check([](const std::string& a) {
        return family_by_model_type(a) || family_by_gguf_arch(a) ? "" : "unknown family " + a + " (known: " + supported_model_types() + ")";
      });
  cmd->add_option("--head-dim", o->head_dim, "size of each attention head (default: hidden size / heads)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--hidden-size", c.hidden_size, "hidden size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--intermediate-size", c.intermediate_size, "MLP size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--layers", c.num_hidden_layers, "decoder layers")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--heads", c.num_attention_heads, "attention heads")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--kv-heads", c.num_key_value_heads, "key/value heads (grouped-query attention)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--context", c.max_position_embeddings, "context length (max_position_embeddings)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--rope-theta", c.rope_theta, "RoPE base (default: the family's, 1e6 for Gemma 3)")->capture_default_str();
  cmd->add_option("--sliding-window", o->sliding_window,
                  "Gemma 2/3: the local layers' window (default 4096 / 512); Phi-3: every layer's (default none)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--rotary-dim", o->rotary_dim,
                  "Phi-3: RoPE on the first N values of each head (Phi-4-mini: 96 of 128; default all)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--longrope", o->longrope_original,
                  "Phi-3: LongRoPE (short and long factors) with this original context, --context being the extended one")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--attn-softcap", o->attn_softcap, "Gemma 2: the cap c of the attention scores, c·tanh(s/c) (default 50)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--final-softcap", o->final_softcap, "Gemma 2: the cap c of the logits, c·tanh(z/c) (default 30)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--tie-embeddings,!--no-tie-embeddings", c.tie_word_embeddings,
                "share the embedding with the output head (default: on)");
  cmd->add_option("--seed", o->seed, "seed of the random weights")->capture_default_str();
  auto* shape = cmd->add_option("--shape", o->shape,
                                "the architecture of a published model instead of --arch and the size options: smollm2-135m, "
                                "qwen2.5-0.5b, qwen3-0.6b, smollm3-3b, gemma2-2b, gemma3-1b, phi3-mini or llama2-7b (the vocabulary "
                                "is still the tokenizer's)")
                    ->check(CLI::IsMember({"smollm2-135m", "qwen2.5-0.5b", "qwen3-0.6b", "smollm3-3b", "gemma2-2b", "gemma3-1b",
                                           "phi3-mini", "llama2-7b"}));
  for (const char* size : {"--arch", "--head-dim", "--hidden-size", "--intermediate-size", "--layers", "--heads", "--kv-heads",
                           "--context", "--rope-theta", "--tie-embeddings", "--sliding-window", "--attn-softcap",
                           "--final-softcap", "--longrope", "--rotary-dim"})
    shape->excludes(size);
  cmd->add_option("--quantize", o->quantize,
                  "create the linear layers directly quantized: nf4 or fp4 (bitsandbytes 4-bit) or int8 (LLM.int8 rows)")
      ->check(CLI::IsMember({"nf4", "fp4", "int8"}));
  cmd->add_flag("--no-double-quant", o->no_double_quant, "with --quantize nf4|fp4: keep the absmax values in fp32");
  cmd->add_option("--dtype", o->dtype, "dtype of the weights that are not quantized (embeddings, lm_head, linear layers without --quantize)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->callback([o, cmd] {
    o->rope_theta_given = cmd->count("--rope-theta") > 0;
    run_init(*o);
  });
}

}  // namespace lora::cli
