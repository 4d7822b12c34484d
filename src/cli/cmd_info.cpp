// lora info MODEL: what a model is, before anyone spends time loading it into a run.
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "formats/model_loader.h"
#include "model/family.h"
#include "tokenizer/tokenizer.h"

namespace lora::cli {

namespace {

void count_dtypes(const Model& m, std::map<std::string, int64_t>& params) {
  auto add = [&](const Tensor& t) {
    if (!t.empty()) params[dtype_name(t.dtype())] += t.numel();
  };
  add(m.weights.tok_embeddings);
  add(m.weights.norm);
  if (m.weights.lm_head.data() != m.weights.tok_embeddings.data()) add(m.weights.lm_head);
  for (const LayerWeights& l : m.weights.layers) l.for_each([&](const char*, const Tensor& t) { add(t); });
}

}  // namespace

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show a model's architecture, size, dtypes, tokenizer and context length");
  auto opts = std::make_shared<ModelOptions>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("model", opts->model, "Hugging Face folder, .gguf file or llama2.c .bin checkpoint")->required();
  cmd->add_option("--tokenizer", opts->tokenizer, "tokenizer to use instead of the model's");
  cmd->add_flag("--json", *json, "print one JSON object");
  cmd->callback([opts, json] {
    const Model m = opts->load(false);
    const ModelConfig& c = m.config;
    std::map<std::string, int64_t> by_dtype;
    count_dtypes(m, by_dtype);
    const std::string tok_kind = m.tokenizer ? m.tokenizer->kind() : "none";
    const int64_t tok_vocab = m.tokenizer ? m.tokenizer->vocab_size() : 0;
    if (*json) {
      nlohmann::json j = {{"path", m.source_path}, {"format", m.source_format}, {"config", c.to_hf_json()},
                          {"parameters", m.parameter_count()}, {"parameters_by_dtype", by_dtype},
                          {"tokenizer", {{"kind", tok_kind}, {"vocab_size", tok_vocab}}},
                          {"context_length", c.max_position_embeddings},
                          {"family", {{"model_type", c.model_type}, {"features", model_family(c.model_type).features}}}};
      fmt::print("{}\n", j.dump(2));
      return;
    }
    fmt::print("model:           {} ({})\n", m.source_path, m.source_format);
    fmt::print("architecture:    {} (model_type {})\n", c.architecture, c.model_type);
    fmt::print("family:          {}\n", model_family(c.model_type).features);
    if (!c.no_rope_layers.empty()) {
      std::string nope;
      for (int64_t l = 0; l < c.num_hidden_layers; ++l)
        if (!c.uses_rope(l)) nope += fmt::format("{}{}", nope.empty() ? "" : ",", l);
      fmt::print("no RoPE on:      layers {}\n", nope);
    }
    if (c.gemma_block) {
      std::string global;
      for (int64_t l = 0; l < c.num_hidden_layers; ++l)
        if (!c.is_sliding(l)) global += fmt::format("{}{}", global.empty() ? "" : ",", l);
      fmt::print("local/global:    global layers {} (RoPE base {}{}), the others local (window {}, RoPE base {}); "
                 "attention scale query_pre_attn_scalar {}^-1/2\n",
                 global.empty() ? "none" : global, c.rope_theta, c.rope_scaling.type.empty() ? "" : ", " + c.rope_scaling.type + " scaling",
                 c.sliding_window, c.rope_local_base_freq, c.query_pre_attn_scalar);
      if (c.attn_logit_softcapping > 0 || c.final_logit_softcapping > 0)
        fmt::print("soft-capping:    attention scores {}, final logits {} (c·tanh(x/c))\n",
                   c.attn_logit_softcapping > 0 ? fmt::format("{}", c.attn_logit_softcapping) : "none",
                   c.final_logit_softcapping > 0 ? fmt::format("{}", c.final_logit_softcapping) : "none");
    }
    fmt::print("parameters:      {} ({:.2f} M)\n", m.parameter_count(), double(m.parameter_count()) / 1e6);
    std::string dt;
    for (const auto& [name, n] : by_dtype) dt += fmt::format("{}{} {}", dt.empty() ? "" : ", ", name, n);
    fmt::print("dtypes:          {}\n", dt);
    fmt::print("layers:          {}\n", c.num_hidden_layers);
    fmt::print("hidden size:     {} (intermediate {})\n", c.hidden_size, c.intermediate_size);
    fmt::print("attention:       {} heads, {} kv heads, head_dim {}{}\n", c.num_attention_heads,
               c.num_key_value_heads, c.head_dim, c.attention_bias ? ", q/k/v biases" : "");
    fmt::print("vocabulary:      {}{}\n", c.vocab_size, c.tie_word_embeddings ? " (lm_head tied to embeddings)" : "");
    fmt::print("context length:  {}\n", c.max_position_embeddings);
    std::string scaling = c.rope_scaling.type.empty() ? "" : fmt::format(", {} scaling x{}", c.rope_scaling.type, c.rope_scaling.factor);
    if (c.rope_scaling.type == "longrope")
      scaling += fmt::format(" (original context {}, attention factor {:.4f})", c.rope_scaling.original_max_position_embeddings,
                             c.rope_scaling.attention_factor);
    if (c.rope_dim() != c.head_dim) scaling += fmt::format(", on {} of {} values a head", c.rope_dim(), c.head_dim);
    fmt::print("rope:            theta {}{}\n", c.rope_theta, scaling);
    fmt::print("rms_norm_eps:    {}\n", c.rms_norm_eps);
    if (m.tokenizer)
      fmt::print("tokenizer:       {} ({} tokens, bos {}, eos {})\n", tok_kind, tok_vocab, m.tokenizer->bos_id(),
                 m.tokenizer->eos_id());
    else
      fmt::print("tokenizer:       none found (use --tokenizer)\n");
  });
}

}  // namespace lora::cli
