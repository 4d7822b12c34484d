#include "adapters/gguf_adapter.h"

#include <cmath>
#include <filesystem>
#include <regex>

#include <fmt/format.h>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "formats/rope_layout.h"
#include "model/family.h"

namespace lora {

namespace {

// The base tensor a module's LoRA belongs to, as llama.cpp names it.
std::string gguf_weight_name(const std::string& module) {
  const ModuleRef m = *parse_module_path(module);
  if (m.kind == ModuleRef::Kind::Embedding) return "token_embd.weight";
  if (m.kind == ModuleRef::Kind::Head) return "output.weight";
  return fmt::format("blk.{}.{}.weight", m.layer, module_gguf_name(m));
}

// The inverse: "blk.3.ffn_up.weight" -> "model.layers.3.mlp.up_proj" ("...mlp.gate_up_proj" in a file of a family
// that fuses gate|up into ffn_up, Phi-3's); "" when it names no LoRA target.
std::string module_of_gguf_weight(const std::string& name, bool fused) {
  if (name == "token_embd.weight") return "model.embed_tokens";
  if (name == "output.weight") return "lm_head";
  static const std::regex re(R"(blk\.(\d{1,9})\.([a-z_]+)\.weight)");
  std::smatch m;
  if (!std::regex_match(name, m, re)) return "";
  if (fused)
    for (const std::string module : {"self_attn.qkv_proj", "mlp.gate_up_proj"}) {
      const std::string path = fmt::format("model.layers.{}.{}", m[1].str(), module);
      if (m[2] == module_gguf_name(*parse_module_path(path))) return path;
    }
  for (int s = 0; s < kNumLayerSites; ++s)
    if (m[2] == site_gguf_name(LinearSite(s))) return module_path(std::stoll(m[1]), LinearSite(s));
  return "";
}

// How many heads the rows of a module's output split into for the RoPE permutation (0: none).
int64_t rope_heads_of(const std::string& module, const ModelConfig& c) {
  const ModuleRef m = *parse_module_path(module);
  if (m.kind != ModuleRef::Kind::Linear) return 0;
  if (m.site == LinearSite::Q) return c.num_attention_heads;
  if (m.site == LinearSite::K) return c.num_key_value_heads;
  return 0;
}

// llama.cpp's per-tensor scale: alpha / r, computed the way LoraConfig::scaling_for computes alpha / r so
// that the same adapter read from PEFT and from GGUF has the same scaling bit for bit.
float llama_cpp_scaling(float alpha, int64_t r) { return alpha != 0.0f ? float(double(alpha) / double(r)) : 1.0f; }

}  // namespace

void write_gguf_adapter(const Adapter& adapter, const Model& base, const std::string& path, DType dtype) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16)
    fail("GGUF adapter tensors are written as f32, f16 or bf16, not {}", dtype_name(dtype));
  Adapter a = as_plain_lora(adapter);  // shares the tensors; AdaLoRA's E folded into A
  check_adapter_fits(a, base);  // also drops PEFT's copies of the base embedding, which llama.cpp's converter skips
  a = join_fused_modules(a);  // (Phi-3: llama.cpp's attn_qkv and ffn_up are one matrix each)
  const std::string what = a.source.empty() ? std::string("the adapter") : a.source;
  if (a.uses_dora()) fail("{}: a DoRA adapter (magnitude vectors) cannot be expressed as a llama.cpp GGUF LoRA; merge it into the model instead", what);
  if (!a.biases.empty()) fail("{}: trained biases cannot be expressed as a llama.cpp GGUF LoRA; merge the adapter into the model instead", what);
  if (!a.replaced.empty() || !a.embedding_layers.empty())
    fail("{}: whole replaced modules ({}) cannot be expressed as a llama.cpp GGUF LoRA; merge the adapter into the model instead",
         what, !a.replaced.empty() ? a.replaced.begin()->first : a.embedding_layers.begin()->first);
  const ModelConfig& c = base.config;
  const bool tied = base.weights.lm_head.data() == base.weights.tok_embeddings.data();
  if (tied && a.linears.count("lm_head"))
    fail("{}: the base model ties lm_head to the embedding, so llama.cpp's model has no output.weight for the lm_head LoRA", what);
  const std::string arch = gguf_architecture(c);

  // One alpha for the file: the one most modules imply (alpha = scaling · r); others fold the rest into B.
  std::map<float, int> votes;
  auto vote = [&](const LoraFactors& f) { ++votes[f.scaling * float(f.rank())]; };
  for (const auto& [module, f] : a.linears) vote(f);
  if (a.embedding) vote(*a.embedding);
  if (votes.empty()) fail("{}: the adapter has no LoRA tensors", what);
  float alpha = std::max_element(votes.begin(), votes.end(), [](auto& x, auto& y) { return x.second < y.second; })->first;
  // Prefer the config's own alpha when it reproduces the scalings (the usual case: no rounding at all).
  bool config_alpha_exact = true;
  for (const auto& [module, f] : a.linears)
    config_alpha_exact = config_alpha_exact && llama_cpp_scaling(a.config.lora_alpha, f.rank()) == f.scaling;
  if (a.embedding) config_alpha_exact = config_alpha_exact && llama_cpp_scaling(a.config.lora_alpha, a.embedding->rank()) == a.embedding->scaling;
  if (config_alpha_exact) alpha = a.config.lora_alpha;

  auto folded_b = [&](const LoraFactors& f) {
    const float implied = llama_cpp_scaling(alpha, f.rank());
    if (implied == f.scaling) return f.b;
    Tensor b = f.b.clone();
    const float k = f.scaling / implied;
    for (int64_t i = 0; i < b.numel(); ++i) b.f32()[i] *= k;
    return b;
  };
  auto stored = [&](const Tensor& t) { return t.dtype() == dtype ? t : t.to(dtype); };

  GGUFWriter w;
  w.set_string("general.architecture", arch);
  w.set_string("general.type", "adapter");
  w.set_string("general.name", a.name.empty() ? std::filesystem::path(path).stem().string() : a.name);
  w.set_string("adapter.type", "lora");
  w.set_f32("adapter.lora.alpha", alpha);

  if (a.embedding) {
    const LoraFactors& e = *a.embedding;
    // llama.cpp gathers rows of lora_a per token: it stores Aᵀ, [vocab, r] row-major.
    Tensor at(DType::F32, {e.a.dim(1), e.a.dim(0)});
    for (int64_t k = 0; k < e.a.dim(0); ++k)
      for (int64_t v = 0; v < e.a.dim(1); ++v) at.f32()[v * e.a.dim(0) + k] = e.a.f32()[k * e.a.dim(1) + v];
    w.add_tensor("token_embd.weight.lora_a", stored(at));
    w.add_tensor("token_embd.weight.lora_b", stored(folded_b(e)));
  }
  std::vector<std::string> modules;
  for (const auto& [module, f] : a.linears) modules.push_back(module);
  std::stable_sort(modules.begin(), modules.end(), [](const std::string& x, const std::string& y) {
    auto key = [](const std::string& m) {
      const ModuleRef r = *parse_module_path(m);
      return r.kind == ModuleRef::Kind::Head ? INT64_MAX : r.layer * 16 + int64_t(r.site) * 2 + (r.fused ? 0 : 1);
    };
    return key(x) < key(y);
  });
  for (const std::string& module : modules) {
    const LoraFactors& f = a.linears.at(module);
    Tensor b = folded_b(f);
    const int64_t heads = model_family(c.model_type).interleaved_rope ? rope_heads_of(module, c) : 0;
    if (heads) b = rope_half_to_interleaved(b, heads);
    const std::string name = gguf_weight_name(module);
    w.add_tensor(name + ".lora_a", stored(f.a));
    w.add_tensor(name + ".lora_b", stored(b));
  }
  w.write(path);
}

Adapter read_gguf_adapter(const std::string& path, const ModelConfig* base) {
  const GGUFFile g = GGUFFile::open(path);
  const std::string type = g.get_string("general.type", "");
  if (type != "adapter")
    fail_format(path, "general.type is '{}', not 'adapter'{}", type, type == "model" || type.empty() ? " (is this a model file?)" : "");
  const std::string adapter_type = g.get_string("adapter.type", "");
  if (adapter_type != "lora") fail_format(path, "adapter.type is '{}', expected 'lora'", adapter_type);
  Adapter a;
  a.source = path;
  a.format = "gguf";
  a.name = std::filesystem::path(path).stem().string();
  a.architecture = g.get_string("general.architecture");
  const float alpha = float(g.get_float("adapter.lora.alpha", 0.0));
  if (!std::isfinite(alpha) || alpha < 0) fail_format(path, "adapter.lora.alpha is {}", alpha);

  struct Pair {
    const GGUFTensorInfo *a = nullptr, *b = nullptr;
  };
  std::map<std::string, Pair> pairs;  // module -> its two tensors
  bool first = true;
  for (const GGUFTensorInfo& t : g.tensors()) {
    const bool is_a = t.name.ends_with(".lora_a"), is_b = t.name.ends_with(".lora_b");
    if (!is_a && !is_b) {
      if (t.name.ends_with("_norm.weight"))
        fail_format(path, "tensor '{}' is a norm weight (mergekit); adapters with norm weights are not supported", t.name);
      fail_format(path, "tensor '{}' has an unexpected suffix (expected .lora_a or .lora_b)", t.name);
    }
    const std::string weight = t.name.substr(0, t.name.size() - 7);
    const ModelFamily* arch_family = family_by_gguf_arch(a.architecture);
    const std::string module = module_of_gguf_weight(weight, arch_family && arch_family->fused_linears);
    if (module.empty()) fail_format(path, "tensor '{}' is for '{}', which a Llama-family model does not adapt", t.name, weight);
    if (t.ne.size() != 2) fail_format(path, "tensor '{}' has {} dimensions, expected 2", t.name, t.ne.size());
    Pair& p = pairs[module];
    (is_a ? p.a : p.b) = &t;
    if (first) {
      a.stored_dtype = t.type == uint32_t(GGMLType::F16) ? DType::F16 : t.type == uint32_t(GGMLType::BF16) ? DType::BF16 : DType::F32;
      first = false;
    }
  }
  for (const auto& [module, p] : pairs) {
    const std::string weight = gguf_weight_name(module);
    if (!p.a || !p.b)
      fail_format(path, "tensor '{}' is missing ('{}' is there)", weight + (p.a ? ".lora_b" : ".lora_a"),
                  weight + (p.a ? ".lora_a" : ".lora_b"));
    Tensor ta = g.load_tensor(p.a->name).to(DType::F32), tb = g.load_tensor(p.b->name).to(DType::F32);
    const bool embedding = module == "model.embed_tokens";
    // lora_a: ne [n_in, r] (embedding: [r, vocab]); lora_b: ne [r, n_out].
    const int64_t r = embedding ? p.a->ne[0] : p.a->ne[1];
    if (p.b->ne[0] != r)
      fail_format(path, "tensor '{}' has ne [{}, {}], but '{}' has rank {} (is lora_a transposed?)", p.b->name, p.b->ne[0],
                  p.b->ne[1], p.a->name, r);
    if (r <= 0) fail_format(path, "tensor '{}' has rank 0", p.a->name);
    LoraFactors f;
    f.scaling = llama_cpp_scaling(alpha, r);
    f.b = tb;
    if (embedding) {
      f.a = Tensor(DType::F32, {r, p.a->ne[1]});  // back to PEFT's [r, vocab]
      const int64_t vocab = p.a->ne[1];
      for (int64_t v = 0; v < vocab; ++v)
        for (int64_t k = 0; k < r; ++k) f.a.f32()[k * vocab + v] = ta.f32()[v * r + k];
      a.embedding = f;
      continue;
    }
    f.a = ta;
    const ModelFamily* family = family_by_gguf_arch(a.architecture);
    const int64_t heads = base && family && family->interleaved_rope ? rope_heads_of(module, *base) : 0;
    // Rows that do not match the model are left for check_adapter_fits to report.
    if (heads && f.b.dim(0) == heads * base->head_dim) f.b = rope_interleaved_to_half(f.b, heads);
    a.linears[module] = f;
  }
  if (pairs.empty()) fail_format(path, "no LoRA tensors");
  LoraConfig described;
  described.lora_alpha = alpha;
  a.config = describe_factors(a, described);
  return a;
}

}  // namespace lora
