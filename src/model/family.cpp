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

void apply_family(const ModelFamily& f, ModelConfig& c) {
  c.architecture = f.hf_architecture;
  c.model_type = f.model_type;
  c.attention_bias = f.qkv_bias;
  c.qk_norm = f.qk_norm;
  c.no_rope_layers = f.nope_interval > 0 ? nope_layers(c.num_hidden_layers, f.nope_interval) : std::vector<int64_t>{};
}

std::string supported_model_types() { return list([](const ModelFamily& f) { return f.model_type; }); }
std::string supported_architectures() { return list([](const ModelFamily& f) { return f.hf_architecture; }); }
std::string supported_gguf_archs() { return list([](const ModelFamily& f) { return f.gguf_arch; }); }

}  // namespace lora
