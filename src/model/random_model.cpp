#include "model/random_model.h"

#include <random>

namespace lora {

namespace {

Tensor random_tensor(std::vector<int64_t> shape, DType dtype, float mean, float stddev, std::mt19937_64& rng) {
  Tensor t(DType::F32, std::move(shape));
  std::normal_distribution<float> normal(mean, stddev);
  float* p = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = normal(rng);
  return dtype == DType::F32 ? t : t.to(dtype);
}

}  // namespace

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
    lw.ffn_norm = random_tensor({h}, DType::F32, 1.0f, 0.1f, rng);
    lw.w_gate = random_tensor({f, h}, wd, 0.0f, 0.02f, rng);
    lw.w_up = random_tensor({f, h}, wd, 0.0f, 0.02f, rng);
    lw.w_down = random_tensor({h, f}, wd, 0.0f, 0.02f, rng);
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

}  // namespace lora
