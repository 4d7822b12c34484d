#include "model/random_model.h"

#include "model/family.h"

#include <cmath>
#include <random>

#include "core/error.h"

namespace lora {

namespace {

Tensor random_tensor(std::vector<int64_t> shape, DType dtype, float mean, float stddev, std::mt19937_64& rng) {
  Tensor t(DType::F32, std::move(shape));
  std::normal_distribution<float> normal(mean, stddev);
  float* p = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = normal(rng);
  return dtype == DType::F32 ? t : t.to(dtype);
}

// splitmix64: a counter-based generator, so chunks of a tensor draw independently in parallel.
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// N(mean, stddev) by Box-Muller, chunk c of the tensor drawing from the stream seeded by (seed, c).
Tensor parallel_normal(std::vector<int64_t> shape, float mean, float stddev, uint64_t seed) {
  Tensor t(DType::F32, std::move(shape));
  float* p = t.f32();
  const int64_t n = t.numel(), chunk = 1 << 16;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < (n + chunk - 1) / chunk; ++c) {
    uint64_t state = seed * 0x2545f4914f6cdd1dull + uint64_t(c);
    const int64_t end = std::min(n, (c + 1) * chunk);
    for (int64_t i = c * chunk; i < end; i += 2) {
      const float u1 = float((splitmix64(state) >> 40) + 1) * 0x1p-24f;  // (0, 1]
      const float u2 = float(splitmix64(state) >> 40) * 0x1p-24f;        // [0, 1)
      const float radius = std::sqrt(-2.0f * std::log(u1)) * stddev;
      const float angle = 6.2831853f * u2;
      p[i] = mean + radius * std::cos(angle);
      if (i + 1 < end) p[i + 1] = mean + radius * std::sin(angle);
    }
  }
  return t;
}

}  // namespace

Model random_quantized_model(const ModelConfig& c, uint64_t seed, const QuantConfig& quant, DType dense_dtype) {
  Model m;
  m.config = c;
  if (m.config.head_dim == 0) m.config.head_dim = c.hidden_size / c.num_attention_heads;
  const ModelConfig& cfg = m.config;
  const int64_t h = cfg.hidden_size, q = cfg.q_dim(), kv = cfg.kv_dim(), f = cfg.intermediate_size;
  uint64_t stream = seed;
  auto dense = [&](std::vector<int64_t> shape, DType dtype, float mean, float stddev) {
    Tensor t = parallel_normal(std::move(shape), mean, stddev, ++stream);
    return dtype == DType::F32 ? t : t.to(dtype);
  };
  auto quantized = [&](std::vector<int64_t> shape) { return quantize(parallel_normal(std::move(shape), 0.0f, 0.02f, ++stream), quant); };
  ModelWeights& w = m.weights;
  w.tok_embeddings = dense({cfg.vocab_size, h}, dense_dtype, 0.0f, 0.02f);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = dense({h}, DType::F32, 1.0f, 0.1f);
    lw.wq = quantized({q, h});
    lw.wk = quantized({kv, h});
    lw.wv = quantized({kv, h});
    lw.wo = quantized({h, q});
    if (cfg.attention_bias) {
      lw.bq = dense({q}, DType::F32, 0.0f, 0.02f);
      lw.bk = dense({kv}, DType::F32, 0.0f, 0.02f);
      lw.bv = dense({kv}, DType::F32, 0.0f, 0.02f);
    }
    if (cfg.qk_norm) {
      lw.q_norm = dense({cfg.head_dim}, DType::F32, 1.0f, 0.1f);
      lw.k_norm = dense({cfg.head_dim}, DType::F32, 1.0f, 0.1f);
    }
    if (cfg.gemma_block) lw.post_attn_norm = dense({h}, DType::F32, 1.0f, 0.1f);
    lw.ffn_norm = dense({h}, DType::F32, 1.0f, 0.1f);
    lw.w_gate = quantized({f, h});
    lw.w_up = quantized({f, h});
    lw.w_down = quantized({h, f});
    if (cfg.gemma_block) lw.post_ffn_norm = dense({h}, DType::F32, 1.0f, 0.1f);
    w.layers.push_back(std::move(lw));
  }
  w.norm = dense({h}, DType::F32, 1.0f, 0.1f);
  w.lm_head = cfg.tie_word_embeddings ? w.tok_embeddings : dense({cfg.vocab_size, h}, dense_dtype, 0.0f, 0.02f);
  m.source_format = "random";
  return m;
}

Model random_model(const ModelConfig& c, uint64_t seed, DType weight_dtype) {
  std::mt19937_64 rng(seed);
  Model m;
  m.config = c;
  if (m.config.head_dim == 0) m.config.head_dim = c.hidden_size / c.num_attention_heads;
  const ModelConfig& cfg = m.config;
  const int64_t h = cfg.hidden_size, q = cfg.q_dim(), kv = cfg.kv_dim(), f = cfg.intermediate_size;
  const DType wd = weight_dtype;
  ModelWeights& w = m.weights;
  w.tok_embeddings = random_tensor({cfg.vocab_size, h}, wd, 0.0f, 0.02f, rng);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = random_tensor({h}, DType::F32, 1.0f, 0.1f, rng);
    lw.wq = random_tensor({q, h}, wd, 0.0f, 0.02f, rng);
    lw.wk = random_tensor({kv, h}, wd, 0.0f, 0.02f, rng);
    lw.wv = random_tensor({kv, h}, wd, 0.0f, 0.02f, rng);
    lw.wo = random_tensor({h, q}, wd, 0.0f, 0.02f, rng);
    if (cfg.attention_bias) {
      lw.bq = random_tensor({q}, DType::F32, 0.0f, 0.02f, rng);
      lw.bk = random_tensor({kv}, DType::F32, 0.0f, 0.02f, rng);
      lw.bv = random_tensor({kv}, DType::F32, 0.0f, 0.02f, rng);
    }
    if (cfg.qk_norm) {
      lw.q_norm = random_tensor({cfg.head_dim}, DType::F32, 1.0f, 0.1f, rng);
      lw.k_norm = random_tensor({cfg.head_dim}, DType::F32, 1.0f, 0.1f, rng);
    }
    if (cfg.gemma_block) lw.post_attn_norm = random_tensor({h}, DType::F32, 1.0f, 0.1f, rng);
    lw.ffn_norm = random_tensor({h}, DType::F32, 1.0f, 0.1f, rng);
    lw.w_gate = random_tensor({f, h}, wd, 0.0f, 0.02f, rng);
    lw.w_up = random_tensor({f, h}, wd, 0.0f, 0.02f, rng);
    lw.w_down = random_tensor({h, f}, wd, 0.0f, 0.02f, rng);
    if (cfg.gemma_block) lw.post_ffn_norm = random_tensor({h}, DType::F32, 1.0f, 0.1f, rng);
    w.layers.push_back(std::move(lw));
  }
  w.norm = random_tensor({h}, DType::F32, 1.0f, 0.1f, rng);
  w.lm_head = cfg.tie_word_embeddings ? w.tok_embeddings : random_tensor({cfg.vocab_size, h}, wd, 0.0f, 0.02f, rng);
  m.source_format = "random";
  return m;
}

ModelConfig smollm2_135m_config() {
  ModelConfig c;
  c.hidden_size = 576;
  c.intermediate_size = 1536;
  c.num_hidden_layers = 30;
  c.num_attention_heads = 9;
  c.num_key_value_heads = 3;
  c.head_dim = 64;
  c.vocab_size = 49152;
  c.max_position_embeddings = 8192;
  c.rope_theta = 100000.0f;
  c.tie_word_embeddings = true;
  return c;
}

ModelConfig qwen25_05b_config() {
  ModelConfig c;
  c.architecture = "Qwen2ForCausalLM";
  c.model_type = "qwen2";
  c.hidden_size = 896;
  c.intermediate_size = 4864;
  c.num_hidden_layers = 24;
  c.num_attention_heads = 14;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.vocab_size = 151936;
  c.max_position_embeddings = 32768;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = 1000000.0f;
  c.tie_word_embeddings = true;
  c.attention_bias = true;
  return c;
}

ModelConfig llama2_7b_config() {
  ModelConfig c;
  c.hidden_size = 4096;
  c.intermediate_size = 11008;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 32;
  c.head_dim = 128;
  c.vocab_size = 32000;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.tie_word_embeddings = false;
  return c;
}

// Qwen/Qwen3-0.6B's config.json: head_dim 128 with 16 heads over a hidden size of 1024 (q is wider than x).
ModelConfig qwen3_06b_config() {
  ModelConfig c;
  c.architecture = "Qwen3ForCausalLM";
  c.model_type = "qwen3";
  c.hidden_size = 1024;
  c.intermediate_size = 3072;
  c.num_hidden_layers = 28;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.vocab_size = 151936;
  c.max_position_embeddings = 40960;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = 1000000.0f;
  c.tie_word_embeddings = true;
  c.qk_norm = true;
  return c;
}

// HuggingFaceTB/SmolLM3-3B's config.json: layers 4, 8, ... skip RoPE.
ModelConfig smollm3_3b_config() {
  ModelConfig c;
  c.architecture = "SmolLM3ForCausalLM";
  c.model_type = "smollm3";
  c.hidden_size = 2048;
  c.intermediate_size = 11008;
  c.num_hidden_layers = 36;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 4;
  c.head_dim = 128;
  c.vocab_size = 128256;
  c.max_position_embeddings = 65536;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = 5000000.0f;
  c.tie_word_embeddings = true;
  c.no_rope_layers = nope_layers(c.num_hidden_layers, 4);
  return c;
}

// microsoft/Phi-3-mini-4k-instruct's config.json: 32 layers of 32 heads (no GQA) over 3072, plain RoPE, the
// window of 2047 over every layer that transformers applies.
ModelConfig phi3_mini_config() {
  ModelConfig c;
  c.num_hidden_layers = 32;
  apply_family(model_family("phi3"), c);
  c.hidden_size = 3072;
  c.intermediate_size = 8192;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 32;
  c.head_dim = 96;
  c.vocab_size = 32064;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.tie_word_embeddings = false;
  c.sliding_window = 2047;
  c.layer_types.assign(size_t(c.num_hidden_layers), "sliding_attention");
  return c;
}

// google/gemma-3-1b-pt's config.json: head_dim 256 with 4 heads over a hidden size of 1152, one key/value head,
// 5 local layers (window 512, RoPE base 1e4) to each global one (RoPE base 1e6, no scaling in the 1B).
ModelConfig gemma3_1b_config() {
  ModelConfig c;
  c.hidden_size = 1152;
  c.intermediate_size = 6912;
  c.num_hidden_layers = 26;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 1;
  c.head_dim = 256;
  apply_family(model_family("gemma3_text"), c);
  c.vocab_size = 262144;
  c.max_position_embeddings = 32768;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = 1000000.0f;
  c.rope_local_base_freq = 10000.0f;
  c.query_pre_attn_scalar = 256.0f;
  c.sliding_window = 512;
  c.tie_word_embeddings = true;
  c.bos_token_id = 2;
  c.eos_token_id = 1;
  return c;
}

// google/gemma-2-2b's config.json: head_dim 256 with 8 heads over a hidden size of 2304, 4 key/value heads,
// local (window 4096) and global layers alternating, one RoPE base (1e4), scores capped at 50 and logits at 30.
ModelConfig gemma2_2b_config() {
  ModelConfig c;
  c.hidden_size = 2304;
  c.intermediate_size = 9216;
  c.num_hidden_layers = 26;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.head_dim = 256;
  apply_family(model_family("gemma2"), c);
  c.vocab_size = 256000;
  c.max_position_embeddings = 8192;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = 10000.0f;
  c.rope_local_base_freq = c.rope_theta;
  c.query_pre_attn_scalar = 256.0f;
  c.sliding_window = 4096;
  c.attn_logit_softcapping = 50.0f;
  c.final_logit_softcapping = 30.0f;
  c.tie_word_embeddings = true;
  c.bos_token_id = 2;
  c.eos_token_id = 1;
  return c;
}

ModelConfig model_config_by_name(const std::string& name) {
  if (name == "gemma2-2b") return gemma2_2b_config();
  if (name == "gemma3-1b") return gemma3_1b_config();
  if (name == "smollm2-135m") return smollm2_135m_config();
  if (name == "qwen2.5-0.5b") return qwen25_05b_config();
  if (name == "qwen3-0.6b") return qwen3_06b_config();
  if (name == "smollm3-3b") return smollm3_3b_config();
  if (name == "phi3-mini") return phi3_mini_config();
  if (name == "llama2-7b") return llama2_7b_config();
  fail("unknown model shape '{}' (known: smollm2-135m, qwen2.5-0.5b, qwen3-0.6b, smollm3-3b, gemma2-2b, gemma3-1b, phi3-mini, "
       "llama2-7b)", name);
}

}  // namespace lora
