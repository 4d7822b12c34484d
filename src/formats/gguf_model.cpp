#include "formats/gguf_model.h"

#include <cmath>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/rope_layout.h"
#include "kernels/rope.h"
#include "formats/weight_names.h"
#include "model/family.h"
#include "tokenizer/tokenizer.h"

namespace lora {

namespace {

const ModelFamily& find_architecture(const GGUFFile& g) {
  const std::string arch = g.get_string("general.architecture");
  const ModelFamily* f = family_by_gguf_arch(arch);
  if (!f) fail_format(g.path(), "unsupported GGUF architecture '{}' (supported: {})", arch, supported_gguf_archs());
  return *f;
}

// Llama 3.x GGUF files carry llama3 RoPE scaling as a tensor of per-frequency divisors
// (rope_freqs.weight) instead of its parameters. Recover the factor (the largest divisor) and, with
// the parameters every Llama 3.x release uses, check that they reproduce the tensor.
RopeScaling llama3_scaling_from_rope_freqs(const GGUFFile& g, const ModelConfig& c) {
  const Tensor t = g.load_tensor("rope_freqs.weight").to(DType::F32);
  if (t.numel() != c.head_dim / 2)
    fail_format(g.path(), "tensor 'rope_freqs.weight' has {} values, expected head_dim/2 = {}", t.numel(), c.head_dim / 2);
  const float* f = t.f32();
  RopeScaling rs;
  rs.type = "llama3";
  rs.factor = 1.0f;
  for (int64_t i = 0; i < t.numel(); ++i) rs.factor = std::max(rs.factor, f[i]);
  rs.low_freq_factor = 1.0f;
  rs.high_freq_factor = 4.0f;
  rs.original_max_position_embeddings = 8192;
  ModelConfig scaled = c;
  scaled.rope_scaling = rs;
  const std::vector<double> divisors = rope_freq_divisors(scaled);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double divisor = divisors[size_t(i)];
    if (std::fabs(divisor - f[i]) > 1e-3 * divisor)
      fail_format(g.path(), "tensor 'rope_freqs.weight' does not match llama3 RoPE scaling (factor {}, low 1, high 4, "
                            "original context 8192) at index {}: {} vs {}", rs.factor, i, f[i], divisor);
  }
  return rs;
}

// Gemma 2 and 3 as llama.cpp reads them: the window is required; the local layers are every pattern-th's
// complement (Gemma 3: 6, Gemma 2: 2), Gemma 3's with RoPE base 1e4 unless the file says otherwise, Gemma 2's with
// the global base; Gemma 2's soft caps default to 50 and 30 as in llama.cpp; and the attention scale stands for
// config.json's query_pre_attn_scalar, which GGUF does not carry (gguf_query_pre_attn_scalar).
void read_gemma_keys(const GGUFFile& g, const std::string& p, const ModelFamily& f, ModelConfig& c) {
  if (!g.has(p + "attention.sliding_window"))
    fail_format(g.path(), "missing key '{}attention.sliding_window' (the local layers' window)", p);
  c.sliding_window = g.get_int(p + "attention.sliding_window");
  const int64_t pattern = g.get_int(p + "attention.sliding_window_pattern", f.sliding_window_pattern);
  if (pattern < 1) fail_format(g.path(), "key '{}attention.sliding_window_pattern' must be positive, found {}", p, pattern);
  c.layer_types = sliding_layer_types(c.num_hidden_layers, pattern);
  c.rope_local_base_freq = f.local_rope_base ? float(g.get_float(p + "rope.freq_base_swa", 10000.0)) : c.rope_theta;
  c.query_pre_attn_scalar = gguf_query_pre_attn_scalar(c);
  if (f.default_attn_softcap > 0) {  // (llama.cpp's gemma3 graph has no soft caps)
    c.attn_logit_softcapping = float(g.get_float(p + "attn_logit_softcapping", f.default_attn_softcap));
    c.final_logit_softcapping = float(g.get_float(p + "final_logit_softcapping", f.default_final_softcap));
  }
}

// Phi-3's LongRoPE as convert_hf_to_gguf writes it: the two factor lists as tensors, the original context and the
// attention factor as keys; its sliding window (over every layer, as transformers applies it).
void read_phi3_keys(const GGUFFile& g, const std::string& p, ModelConfig& c) {
  const bool has_long = g.find_tensor("rope_factors_long.weight"), has_short = g.find_tensor("rope_factors_short.weight");
  if (has_long != has_short)
    fail_format(g.path(), "tensor 'rope_factors_{}.weight' without 'rope_factors_{}.weight'", has_long ? "long" : "short",
                has_long ? "short" : "long");
  if (has_long) {
    auto factors = [&](const char* name) {
      const Tensor t = g.load_tensor(name).to(DType::F32);
      if (t.numel() != c.rope_dim() / 2)
        fail_format(g.path(), "tensor '{}' has {} values, expected the rotary dimension / 2 = {}", name, t.numel(),
                    c.rope_dim() / 2);
      return std::vector<float>(t.f32(), t.f32() + t.numel());
    };
    RopeScaling& rs = c.rope_scaling;
    rs.type = "longrope";
    rs.long_factor = factors("rope_factors_long.weight");
    rs.short_factor = factors("rope_factors_short.weight");
    rs.original_max_position_embeddings = g.get_int(p + "rope.scaling.original_context_length", c.max_position_embeddings);
    if (rs.original_max_position_embeddings <= 0)
      fail_format(g.path(), "key '{}rope.scaling.original_context_length' must be positive", p);
    rs.factor = float(double(c.max_position_embeddings) / double(rs.original_max_position_embeddings));
    rs.attention_factor = float(g.get_float(
        p + "rope.scaling.attn_factor", longrope_attention_factor(c.max_position_embeddings, rs.original_max_position_embeddings)));
    if (!(rs.attention_factor > 0.0f)) fail_format(g.path(), "key '{}rope.scaling.attn_factor' must be positive", p);
  }
  if (g.has(p + "attention.sliding_window")) {
    c.sliding_window = g.get_int(p + "attention.sliding_window");
    if (c.sliding_window > 0) c.layer_types.assign(size_t(c.num_hidden_layers), "sliding_attention");
  }
}

}  // namespace

float gguf_query_pre_attn_scalar(const ModelConfig& c) {
  // llama.cpp: hidden/heads for the 27B models (Gemma 2: 46 layers, Gemma 3: 62), else head_dim
  const int64_t layers_27b = model_family(c.model_type).local_rope_base ? 62 : 46;
  return float(c.num_hidden_layers == layers_27b ? c.hidden_size / c.num_attention_heads : c.head_dim);
}

ModelConfig gguf_model_config(const GGUFFile& g) {
  const ModelFamily& a = find_architecture(g);
  const std::string p = std::string(a.gguf_arch) + ".";
  ModelConfig c;
  c.hidden_size = g.get_int(p + "embedding_length");
  c.intermediate_size = g.get_int(p + "feed_forward_length");
  c.num_hidden_layers = g.get_int(p + "block_count");
  ModelConfig::check_layer_count(c.num_hidden_layers, g.path());
  c.num_attention_heads = g.get_int(p + "attention.head_count");
  c.num_key_value_heads = g.get_int(p + "attention.head_count_kv", c.num_attention_heads);
  c.head_dim = g.get_int(p + "attention.key_length", c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0);
  // RoPE over part of each head (Phi-4-mini's 96 of 128): llama.cpp's n_rot
  const int64_t n_rot = g.get_int(p + "rope.dimension_count", c.head_dim);
  if (n_rot != c.head_dim) {
    if (a.interleaved_rope)
      fail_format(g.path(), "key '{}rope.dimension_count' = {} differs from head_dim {}: partial rotary embeddings are "
                            "supported for the NEOX-RoPE families only", p, n_rot, c.head_dim);
    c.rotary_dim = n_rot;
  }
  c.rms_norm_eps = float(g.get_float(p + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_theta = float(g.get_float(p + "rope.freq_base", 10000.0));
  c.max_position_embeddings = g.get_int(p + "context_length", 2048);
  if (g.has(p + "vocab_size")) {
    c.vocab_size = g.get_int(p + "vocab_size");
  } else if (g.has("tokenizer.ggml.tokens")) {
    c.vocab_size = int64_t(g.get_array("tokenizer.ggml.tokens").size());
  } else if (const GGUFTensorInfo* emb = g.find_tensor("token_embd.weight"); emb && emb->ne.size() == 2) {
    c.vocab_size = emb->ne[1];
  } else {
    fail_format(g.path(), "cannot tell the vocabulary size (no {}vocab_size, token list or token_embd.weight)", p);
  }
  c.tie_word_embeddings = g.find_tensor("output.weight") == nullptr;
  // (llama.cpp has no key for the NoPE layers: its smollm3 graph skips RoPE on every 4th layer, as the family does)
  apply_family(a, c);
  if (c.gemma_block) read_gemma_keys(g, p, a, c);
  if (a.fused_linears) read_phi3_keys(g, p, c);
  c.bos_token_id = g.get_int("tokenizer.ggml.bos_token_id", c.bos_token_id);
  c.eos_token_id = g.get_int("tokenizer.ggml.eos_token_id", c.eos_token_id);

  const std::string scaling = g.get_string(p + "rope.scaling.type", "none");
  if (scaling == "linear") {
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = float(g.get_float(p + "rope.scaling.factor"));
  } else if (scaling != "none") {
    fail_format(g.path(), "RoPE scaling type '{}' is not supported (supported: linear, llama3)", scaling);
  }
  c.validate(g.path());
  if (g.find_tensor("rope_freqs.weight")) c.rope_scaling = llama3_scaling_from_rope_freqs(g, c);
  return c;
}

Model load_gguf_model(const std::string& path, const LoadOptions& options) {
  const GGUFFile g = GGUFFile::open(path);
  const ModelFamily& arch = find_architecture(g);
  Model m;
  m.config = gguf_model_config(g);
  m.source_path = path;
  m.source_format = "gguf";
  const ModelConfig& c = m.config;

  auto load = [&](const std::string& name, const std::vector<int64_t>& shape, WeightKind kind) {
    if (!g.find_tensor(name)) fail_format(path, "missing tensor '{}'", name);
    Tensor t = g.load_tensor(name);
    check_shape(path, name, t, shape);
    if (kind != WeightKind::Linear && t.dtype() != DType::F32) t = t.to(DType::F32);
    return t;
  };

  ModelWeights& w = m.weights;
  w.tok_embeddings = load("token_embd.weight", {c.vocab_size, c.hidden_size}, WeightKind::Linear);
  w.norm = load("output_norm.weight", {c.hidden_size}, WeightKind::Norm);
  w.lm_head = c.tie_word_embeddings ? w.tok_embeddings : load("output.weight", {c.vocab_size, c.hidden_size}, WeightKind::Linear);
  w.layers.resize(size_t(c.num_hidden_layers));
  const std::vector<LayerTensorSpec> specs = layer_tensor_specs(c);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    for (const LayerTensorSpec& s : specs) {
      if (s.fused_part > 0) continue;
      if (s.fused_part == 0) {  // Phi-3's attn_qkv / ffn_up (gate rows first): the parts are row ranges of it
        assign_fused_parts(w.layers[size_t(i)], load(gguf_layer_name(i, s), fused_shape(s, c), s.kind), s, specs, c);
        continue;
      }
      Tensor t = load(gguf_layer_name(i, s), expected_shape(s, c), s.kind);
      if (arch.interleaved_rope && s.rope != RopeRows::None) {
        Tensor permuted = rope_interleaved_to_half(t, rope_heads(s, c));
        release_resident_pages(t.data(), t.nbytes());  // the file's order is not read again: only the copy stays resident
        t = std::move(permuted);
      }
      w.layers[size_t(i)].*s.member = std::move(t);
    }
  }

  if (options.load_tokenizer && options.tokenizer_path.empty() && g.has("tokenizer.ggml.model"))
    m.tokenizer = load_tokenizer_from_gguf(g);
  return m;
}

}  // namespace lora
