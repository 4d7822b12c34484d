#pragma once
// The architecture hyper-parameters of a Llama-family decoder, named as in Hugging Face config.json.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace lora {

struct RopeScaling {
  std::string type;  // "" (none), "llama3", "linear"
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";  // config.json "architectures"[0]
  std::string model_type = "llama";               // a family of model/family.h: llama, mistral, qwen2, qwen3, smollm3
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless config.json says otherwise
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 2048;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2)
  bool qk_norm = false;         // RMSNorm of each q and k head (weights q_norm, k_norm of head_dim) before RoPE (Qwen3)
  // SmolLM3's "no_rope_layers": 1 where layer l applies RoPE, 0 where it does not (NoPE); empty: every layer does.
  std::vector<int64_t> no_rope_layers;
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  bool uses_rope(int64_t layer) const { return no_rope_layers.empty() || no_rope_layers[size_t(layer)] != 0; }

  // Parses config.json; a missing required field or an unsupported architecture throws a
  // FormatError naming `path` and the field.
  static ModelConfig from_hf_json(const nlohmann::json& j, const std::string& path);
  nlohmann::json to_hf_json() const;
  // Checks internal consistency (heads divide, positive sizes); throws FormatError naming `path`.
  void validate(const std::string& path) const;
};

}  // namespace lora
