#pragma once
// The architecture hyper-parameters of a Llama-family decoder, named as in Hugging Face config.json.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace lora {

struct RopeScaling {
  std::string type;  // "" (none), "llama3", "linear", "longrope" (Phi-3)
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_max_position_embeddings = 8192;
  // LongRoPE (Phi-3): frequency i is divided by short_factor[i] for contexts up to original_max_position_embeddings
  // and by long_factor[i] beyond (config.json's top-level original_max_position_embeddings); cos and sin are
  // multiplied by attention_factor (sqrt(1 + ln(max/original) / ln(original)) unless config.json gives one).
  std::vector<float> short_factor, long_factor;
  float attention_factor = 1.0f;
};

// LongRoPE's attention factor for a context extended from `original` to `extended` positions:
// sqrt(1 + ln(extended / original) / ln(original)), 1 when not extended (transformers' and llama.cpp's converter's rule).
float longrope_attention_factor(int64_t extended, int64_t original);

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";  // config.json "architectures"[0]
  std::string model_type = "llama";               // a family of model/family.h: llama, mistral, qwen2, qwen3, smollm3
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless config.json says otherwise
  int64_t rotary_dim = 0;  // RoPE on the first rotary_dim values of each head, 0: all (Phi-4-mini: partial_rotary_factor)
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 2048;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2)
  bool fused_linears = false;   // Phi-3: files hold qkv_proj and gate_up_proj (model/family.h)
  bool qk_norm = false;         // RMSNorm of each q and k head (weights q_norm, k_norm of head_dim) before RoPE (Qwen3)
  // SmolLM3's "no_rope_layers": 1 where layer l applies RoPE, 0 where it does not (NoPE); empty: every layer does.
  std::vector<int64_t> no_rope_layers;
  // Gemma 3 (model/family.h): the block with (1+w) norms held as 1+w, post-attention and post-MLP norms, GeGLU,
  // embeddings x sqrt(hidden_size); an attention scale of query_pre_attn_scalar^-1/2; per layer "sliding_attention"
  // (local: RoPE base rope_local_base_freq, unscaled, keys within sliding_window) or "full_attention" (global).
  bool gemma_block = false;
  std::string hidden_act = "silu";   // "silu" (SwiGLU) or "gelu_pytorch_tanh" (GeGLU, Gemma)
  float query_pre_attn_scalar = 0;   // 0: head_dim
  int64_t sliding_window = 0;        // 0: none
  float rope_local_base_freq = 10000.0f;  // (Gemma 3; Gemma 2's local layers use rope_theta as the global ones)
  std::vector<std::string> layer_types;  // empty: every layer "full_attention"
  // Gemma 2: every attention score s becomes c·tanh(s / c) (attn_logit_softcapping), every logit l becomes
  // c·tanh(l / c) (final_logit_softcapping); 0: none (config.json null, as in Gemma 3).
  float attn_logit_softcapping = 0.0f;
  float final_logit_softcapping = 0.0f;
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t rope_dim() const { return rotary_dim > 0 ? rotary_dim : head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  bool uses_rope(int64_t layer) const { return no_rope_layers.empty() || no_rope_layers[size_t(layer)] != 0; }
  bool is_sliding(int64_t layer) const { return !layer_types.empty() && layer_types[size_t(layer)] == "sliding_attention"; }
  bool has_sliding_layers() const;
  // The keys a query of the layer sees: the last sliding_window positions on a sliding_attention layer, 0 (all
  // up to its own) on the others.
  int64_t attention_window(int64_t layer) const { return is_sliding(layer) ? sliding_window : 0; }
  // What q is multiplied by so that the attention kernels' 1/sqrt(head_dim) becomes query_pre_attn_scalar^-1/2.
  float query_scale() const;
  // What the embeddings are multiplied by: sqrt(hidden_size) for Gemma, rounded to the embedding's dtype as
  // transformers does (a bf16 checkpoint's 33.94 is 34), else 1.
  float embedding_scale(bool bf16_embeddings) const;
  // The config of the local layers' RoPE: base rope_local_base_freq, no scaling (Gemma 3); the config itself for
  // a family whose local layers share the global RoPE (Gemma 2).
  ModelConfig local_rope_config() const;

  // Parses config.json; a missing required field or an unsupported architecture throws a
  // FormatError naming `path` and the field.
  static ModelConfig from_hf_json(const nlohmann::json& j, const std::string& path);
  nlohmann::json to_hf_json() const;
  // Checks internal consistency (heads divide, positive sizes); throws FormatError naming `path`.
  void validate(const std::string& path) const;
  // The bound validate() puts on num_hidden_layers, checked alone by the readers before they build
  // per-layer lists (NoPE layers, layer types) from a count no one has validated yet.
  static constexpr int64_t kMaxLayers = 4096;
  static void check_layer_count(int64_t n, const std::string& path);
};

}  // namespace lora
