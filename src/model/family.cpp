#include "model/family.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "model/config.h"

namespace lora {

namespace {

constexpr ModelFamily kFamilies[] = {
    {"llama", "LlamaForCausalLM", "llama", true, false, false, 0, 2048, "Llama block (RMSNorm, RoPE, GQA, SwiGLU)"},
    {"qwen2", "Qwen2ForCausalLM", "qwen2", false, true, false, 0, 32768, "Llama block with q/k/v biases"},
    {"mistral", "MistralForCausalLM", "llama", true, false, false, 0, 131072, "Llama block (RMSNorm, RoPE, GQA, SwiGLU)"},
    {"qwen3", "Qwen3ForCausalLM", "qwen3", false, false, true, 0, 32768,
     "Llama block with an RMSNorm of every query and key head before RoPE (q_norm, k_norm)"},
    {"smollm3", "SmolLM3ForCausalLM", "smollm3", true, false, false, 4, 32768,
     "Llama block without RoPE on every 4th layer (NoPE)"},
    {"gemma2", "Gemma2ForCausalLM", "gemma2", false, false, false, 0, 8192,
     "Gemma 2 block: (1+w) RMSNorms before and after attention and MLP, GeGLU (tanh GELU), embeddings x sqrt(hidden), "
     "local (sliding-window) and global layers alternating, attention and final logit soft-capping, "
     "query_pre_attn_scalar",
     /*gemma_block=*/true, /*default_rope_theta=*/10000.0, /*default_tie_word_embeddings=*/true,
     /*sliding_window_pattern=*/2, /*local_rope_base=*/false, /*default_attn_softcap=*/50.0,
     /*default_final_softcap=*/30.0},
    {"gemma3_text", "Gemma3ForCausalLM", "gemma3", false, false, true, 0, 131072,
     "Gemma 3 block: (1+w) RMSNorms before and after attention and MLP, q/k head norms, GeGLU (tanh GELU), "
     "embeddings x sqrt(hidden), 5 local (sliding-window) layers to 1 global, query_pre_attn_scalar",
     /*gemma_block=*/true, /*default_rope_theta=*/1000000.0, /*default_tie_word_embeddings=*/true,
     /*sliding_window_pattern=*/6, /*local_rope_base=*/true},
    {"phi3", "Phi3ForCausalLM", "phi3", false, false, false, 0, 4096,
     "Phi-3 block: Llama's with q|k|v fused in qkv_proj and gate|up in gate_up_proj, LongRoPE, partial rotary (Phi-4-mini)",
     /*gemma_block=*/false, /*default_rope_theta=*/10000.0, /*default_tie_word_embeddings=*/false,
     /*sliding_window_pattern=*/0, /*local_rope_base=*/false, /*default_attn_softcap=*/0.0, /*default_final_softcap=*/0.0,
     /*fused_linears=*/true, /*default_rms_norm_eps=*/1e-5},
};

template <class Key>
const ModelFamily* find(Key key) {
  for (const ModelFamily& f : kFamilies)
    if (key(f)) return &f;
  return nullptr;
}

template <class Field>
std::string list(Field field) {
  std::vector<std::string> names;
  for (const ModelFamily& f : kFamilies)
    if (std::find(names.begin(), names.end(), field(f)) == names.end()) names.push_back(field(f));  // mistral's GGUF arch is llama's
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace

const ModelFamily* family_by_model_type(const std::string& t) {
  return find([&](const ModelFamily& f) { return t == f.model_type; });
}
const ModelFamily* family_by_architecture(const std::string& a) {
  return find([&](const ModelFamily& f) { return a == f.hf_architecture; });
}
const ModelFamily* family_by_gguf_arch(const std::string& a) {
  return find([&](const ModelFamily& f) { return a == f.gguf_arch; });  // "llama" finds llama, not mistral
}

const ModelFamily& model_family(const std::string& model_type) {
  const ModelFamily* f = family_by_model_type(model_type);
  if (!f) fail("model type '{}' is not supported (supported: {})", model_type, supported_model_types());
  return *f;
}

std::vector<int64_t> nope_layers(int64_t n_layers, int64_t interval) {
  std::vector<int64_t> flags;
  for (int64_t l = 0; l < n_layers; ++l) flags.push_back((l + 1) % interval != 0 ? 1 : 0);
  return flags;
}

std::vector<std::string> sliding_layer_types(int64_t n_layers, int64_t pattern) {
  std::vector<std::string> types;
  for (int64_t l = 0; l < n_layers; ++l) types.push_back((l + 1) % pattern != 0 ? "sliding_attention" : "full_attention");
  return types;
}

void apply_family(const ModelFamily& f, ModelConfig& c) {
  c.architecture = f.hf_architecture;
  c.model_type = f.model_type;
  c.attention_bias = f.qkv_bias;
  c.qk_norm = f.qk_norm;
  c.no_rope_layers = f.nope_interval > 0 ? nope_layers(c.num_hidden_layers, f.nope_interval) : std::vector<int64_t>{};
  c.gemma_block = f.gemma_block;
  c.fused_linears = f.fused_linears;
  c.hidden_act = f.gemma_block ? "gelu_pytorch_tanh" : "silu";
  c.layer_types = f.sliding_window_pattern > 0 ? sliding_layer_types(c.num_hidden_layers, f.sliding_window_pattern)
                                               : std::vector<std::string>{};
  if (f.gemma_block) {  // Gemma 3 1B's values (Gemma 2: its 2B's window); lora init's options may set them after
    if (c.sliding_window == 0) c.sliding_window = f.local_rope_base ? 512 : 4096;
    if (c.query_pre_attn_scalar == 0) c.query_pre_attn_scalar = float(c.head_dim > 0 ? c.head_dim : 256);
    c.attn_logit_softcapping = float(f.default_attn_softcap);
    c.final_logit_softcapping = float(f.default_final_softcap);
  }
}

std::string supported_model_types() { return list([](const ModelFamily& f) { return f.model_type; }); }
std::string supported_architectures() { return list([](const ModelFamily& f) { return f.hf_architecture; }); }
std::string supported_gguf_archs() { return list([](const ModelFamily& f) { return f.gguf_arch; }); }

}  // namespace lora
