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
//   gemma2     Gemma2ForCausalLM          gemma2     as in HF (NEOX)   (1+w) RMSNorms, sandwich norms, GeGLU (tanh GELU),
//                                                                      embeddings x sqrt(hidden), local (sliding-window)
//                                                                      and global layers alternating, attention and
//                                                                      final logit soft-capping
//   gemma3_text Gemma3ForCausalLM         gemma3     as in HF (NEOX)   (1+w) RMSNorms, sandwich norms, q/k head norms,
//                                                                      GeGLU (tanh GELU), embeddings x sqrt(hidden),
//                                                                      local (sliding-window) and global layers, the
//                                                                      local ones with their own RoPE base
//   phi3       Phi3ForCausalLM            phi3       as in HF (NEOX)   q|k|v and gate|up stored fused (qkv_proj,
//                                                                      gate_up_proj; GGUF attn_qkv, ffn_up), LongRoPE
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
  // Gemma: RMSNorm y = x/rms(x)·(1 + w) with w stored in config.json's checkpoints (held here as 1 + w, as GGUF
  // does), post-attention and post-MLP norms before each residual add, embeddings scaled by sqrt(hidden_size),
  // GeGLU with tanh-GELU, an attention scale of query_pre_attn_scalar^-1/2, local layers (own RoPE base).
  bool gemma_block = false;
  double default_rope_theta = 10000.0;  // transformers' default when config.json leaves it out
  bool default_tie_word_embeddings = false;
  int64_t sliding_window_pattern = 0;   // every pattern-th layer global, the others local (0: all global)
  bool local_rope_base = false;         // local layers with their own RoPE base, rope_local_base_freq (Gemma 3)
  // transformers' defaults of attn_logit_softcapping and final_logit_softcapping (0: null, no capping)
  double default_attn_softcap = 0.0, default_final_softcap = 0.0;
  // Phi-3: the files hold q|k|v as one qkv_proj and gate|up as one gate_up_proj (and PEFT adapts them as one
  // module each); the model holds the parts (formats/weight_names.h).
  bool fused_linears = false;
  // transformers' rms_norm_eps when config.json leaves it out
  double default_rms_norm_eps = 1e-6;
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
// attention_bias (qkv_bias), qk_norm, no_rope_layers (for c.num_hidden_layers, which must be set), and a Gemma
// block's switches (hidden_act, norms, embedding scale, layer_types by the family's pattern). What a config.json
// says otherwise (attention_bias, no_rope_layers, layer_types) is read over it there.
void apply_family(const ModelFamily& f, ModelConfig& c);

// config.json "no_rope_layers" of a NoPE family: 1 (RoPE) on every layer but each interval-th (0).
std::vector<int64_t> nope_layers(int64_t n_layers, int64_t interval);

// Gemma 3's "layer_types" from its sliding_window_pattern: every pattern-th layer "full_attention", the others
// "sliding_attention" (transformers' Gemma3TextConfig and llama.cpp's set_swa_pattern agree).
std::vector<std::string> sliding_layer_types(int64_t n_layers, int64_t pattern);

}  // namespace lora
