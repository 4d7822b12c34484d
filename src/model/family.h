#pragma once
// The model families lora.cpp runs, in one table: how each is named in Hugging Face's config.json and in
// GGUF, and which of the pieces beyond the Llama block it has. Every loader, writer and the adapter code ask
// this table instead of comparing model_type strings.
//
//   family     config.json architecture   GGUF arch  q/k rows in GGUF  beyond the Llama block
//   llama      LlamaForCausalLM           llama      interleaved       -
//   qwen2      Qwen2ForCausalLM           qwen2      as in HF (NEOX)   q/k/v biases
//   mistral    MistralForCausalLM         llama      interleaved       -
//   qwen3      Qwen3ForCausalLM           qwen3      as in HF (NEOX)   RMSNorm of every q and k head before RoPE
//   smollm3    SmolLM3ForCausalLM         smollm3    interleaved       no RoPE on every 4th layer (NoPE)
#include <cstdint>
#include <string>
#include <vector>

namespace lora {

struct ModelConfig;

struct ModelFamily {
  const char* model_type;       // config.json "model_type"
  const char* hf_architecture;  // config.json "architectures"[0]
  const char* gguf_arch;        // GGUF general.architecture
  bool interleaved_rope;        // GGUF stores q/k rows in interleaved pairs (llama.cpp's "normal" RoPE)
  bool qkv_bias;                // q/k/v biases always (no config switch)
  bool qk_norm;                 // per-head RMSNorm of q and k (q_norm, k_norm weights of head_dim)
  int64_t nope_interval;        // every nope_interval-th layer skips RoPE (0: none); llama.cpp fixes it at 4
  int64_t default_max_position_embeddings;  // transformers' default when config.json leaves it out
  const char* features;         // one line for `lora info`
};

// By config.json model_type, by architecture name, by GGUF architecture: null when unknown.
const ModelFamily* family_by_model_type(const std::string& model_type);
const ModelFamily* family_by_architecture(const std::string& hf_architecture);
const ModelFamily* family_by_gguf_arch(const std::string& gguf_arch);
// The model_type of a known family; throws naming the supported ones otherwise.
const ModelFamily& model_family(const std::string& model_type);
std::string supported_model_types();     // "llama, qwen2, mistral, qwen3, smollm3"
std::string supported_architectures();   // "LlamaForCausalLM, ..."
std::string supported_gguf_archs();      // "llama, qwen2, qwen3, smollm3"

// Sets c's names and the family's own switches as the family has them by default: architecture, model_type,
// attention_bias (qkv_bias), qk_norm, no_rope_layers (for c.num_hidden_layers, which must be set). What a
// config.json says otherwise (attention_bias, no_rope_layers) is read over it there.
void apply_family(const ModelFamily& f, ModelConfig& c);

// config.json "no_rope_layers" of a NoPE family: 1 (RoPE) on every layer but each interval-th (0).
std::vector<int64_t> nope_layers(int64_t n_layers, int64_t interval);

}  // namespace lora
