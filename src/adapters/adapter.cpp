#include "adapters/adapter.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <regex>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "core/matmul.h"
#include "model/family.h"

namespace lora {

namespace {

struct SiteNames {
  const char* hf;    // under "model.layers.N."
  const char* gguf;  // under "blk.N."
  Tensor LayerWeights::*weight;
  Tensor LayerWeights::*bias;  // null: the module never has one
};

const SiteNames& names_of(LinearSite s) {
  static const SiteNames table[kNumLayerSites] = {
      {"self_attn.q_proj", "attn_q", &LayerWeights::wq, &LayerWeights::bq},
      {"self_attn.k_proj", "attn_k", &LayerWeights::wk, &LayerWeights::bk},
      {"self_attn.v_proj", "attn_v", &LayerWeights::wv, &LayerWeights::bv},
      {"self_attn.o_proj", "attn_output", &LayerWeights::wo, nullptr},
      {"mlp.gate_proj", "ffn_gate", &LayerWeights::w_gate, nullptr},
      {"mlp.up_proj", "ffn_up", &LayerWeights::w_up, nullptr},
      {"mlp.down_proj", "ffn_down", &LayerWeights::w_down, nullptr},
  };
  if (s == LinearSite::Head) fail("the output head is not a layer module");
  return table[int(s)];
}

// Model order: layers ascending, then sites in Hugging Face order; the embedding first, the head last.
int64_t module_order(const std::string& path) {
  const auto m = parse_module_path(path);
  if (!m) return INT64_MAX;
  if (m->kind == ModuleRef::Kind::Embedding) return -1;
  if (m->kind == ModuleRef::Kind::Head) return INT64_MAX - 1;
  return m->layer * 16 + int(m->site) * 2 + (m->fused ? 0 : 1);
}

std::vector<std::string> in_model_order(std::vector<std::string> paths) {
  std::stable_sort(paths.begin(), paths.end(),
                   [](const std::string& a, const std::string& b) { return module_order(a) < module_order(b); });
  return paths;
}

template <typename Map> std::vector<std::string> keys_of(const Map& m) {
  std::vector<std::string> k;
  for (const auto& [key, value] : m) k.push_back(key);
  return k;
}

std::string shape_text(const Adapter& adapter, const std::vector<int64_t>& shape) {
  // GGUF users read ne (innermost first); PEFT users read torch shapes.
  std::vector<int64_t> s = shape;
  if (adapter.format == "gguf") std::reverse(s.begin(), s.end());
  return fmt::format("{}[{}]", adapter.format == "gguf" ? "ne " : "", fmt::join(s, ", "));
}

[[noreturn]] void fail_shape(const Adapter& adapter, const std::string& module, const std::string& part,
                             const Tensor& t, const std::vector<int64_t>& want, const std::string& why) {
  fail_format(adapter.source, "tensor '{}' has shape {}, but the base model needs {} ({})",
              adapter_tensor_name(adapter, module, part), shape_text(adapter, t.shape()), shape_text(adapter, want), why);
}

bool same_values(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  const Tensor fa = a.dtype() == DType::F32 ? a : a.to(DType::F32);
  const Tensor fb = b.dtype() == DType::F32 ? b : b.to(DType::F32);
  return std::memcmp(fa.data(), fb.data(), fa.nbytes()) == 0;
}

}  // namespace

Tensor LoraFactors::delta() const {
  Tensor d(DType::F32, {b.dim(0), a.dim(1)});
  if (!e.empty()) {
    Tensor ea = a.clone();  // diag(E)·A
    for (int64_t k = 0; k < ea.dim(0); ++k)
      for (int64_t j = 0; j < ea.dim(1); ++j) ea.f32()[k * ea.dim(1) + j] *= e.f32()[k];
    matmul(mat(b), false, mat(ea), false, mut_mat(d), scaling);
    return d;
  }
  matmul(mat(b), false, mat(a), false, mut_mat(d), scaling);
  return d;
}

int64_t Adapter::parameter_count() const {
  int64_t n = 0;
  auto count = [&](const LoraFactors& f) {
    n += f.a.numel() + f.b.numel() + (f.magnitude.empty() ? 0 : f.magnitude.numel()) + (f.e.empty() ? 0 : f.e.numel());
  };
  for (const auto& [path, f] : linears) count(f);
  if (embedding) count(*embedding);
  for (const auto& [path, t] : biases) n += t.numel();
  for (const auto& [path, t] : replaced) n += t.numel();
  return n;
}

bool Adapter::uses_dora() const {
  for (const auto& [path, f] : linears)
    if (!f.magnitude.empty()) return true;
  return false;
}

std::map<int64_t, int> Adapter::rank_histogram() const {
  std::map<int64_t, int> h;
  for (const auto& [path, f] : linears) ++h[f.rank()];
  if (embedding) ++h[embedding->rank()];
  return h;
}

const std::vector<FusedModule>& fused_module_table() {
  static const std::vector<FusedModule> table = {
      {"self_attn.qkv_proj", "attn_qkv", {LinearSite::Q, LinearSite::K, LinearSite::V}},
      {"mlp.gate_up_proj", "ffn_up", {LinearSite::Gate, LinearSite::Up}},
  };
  return table;
}

std::optional<ModuleRef> parse_module_path(const std::string& path) {
  if (path == "model.embed_tokens") return ModuleRef{ModuleRef::Kind::Embedding};
  if (path == "lm_head") return ModuleRef{ModuleRef::Kind::Head, -1, LinearSite::Head};
  static const std::regex re(
      R"(model\.layers\.(\d{1,9})\.(self_attn\.[qkvo]_proj|self_attn\.qkv_proj|mlp\.(gate|up|down|gate_up)_proj))");
  std::smatch m;
  if (!std::regex_match(path, m, re)) return std::nullopt;
  for (const FusedModule& f : fused_module_table())
    if (m[2] == f.hf) return ModuleRef{ModuleRef::Kind::Linear, std::stoll(m[1]), f.parts[0], true};
  for (int s = 0; s < kNumLayerSites; ++s)
    if (m[2] == names_of(LinearSite(s)).hf) return ModuleRef{ModuleRef::Kind::Linear, std::stoll(m[1]), LinearSite(s)};
  return std::nullopt;
}

namespace {
const FusedModule& fused_of_ref(const ModuleRef& m) {
  for (const FusedModule& f : fused_module_table())
    if (f.parts[0] == m.site) return f;
  fail("no fused module starts at {}", site_module_name(m.site));
}
}  // namespace

const char* module_name(const ModuleRef& m) {
  if (m.kind == ModuleRef::Kind::Embedding) return "embed_tokens";
  return m.fused ? fused_of_ref(m).hf : site_module_name(m.site);
}

const char* module_gguf_name(const ModuleRef& m) {
  if (m.kind == ModuleRef::Kind::Embedding) return "token_embd";
  return m.fused ? fused_of_ref(m).gguf : site_gguf_name(m.site);
}

const FusedModule* fused_module_of(LinearSite site, const ModelConfig& c) {
  return c.fused_linears ? fused_module_holding(site) : nullptr;
}

const FusedModule* fused_module_holding(LinearSite site) {
  for (const FusedModule& f : fused_module_table())
    if (std::find(f.parts.begin(), f.parts.end(), site) != f.parts.end()) return &f;
  return nullptr;
}

std::string file_module_path(int64_t layer, LinearSite site, const ModelConfig& c) {
  const FusedModule* f = fused_module_of(site, c);
  return f ? fmt::format("model.layers.{}.{}", layer, f->hf) : module_path(layer, site);
}

int64_t site_rows(LinearSite site, const ModelConfig& c) {
  switch (site) {
    case LinearSite::Q: return c.q_dim();
    case LinearSite::K: case LinearSite::V: return c.kv_dim();
    case LinearSite::Gate: case LinearSite::Up: return c.intermediate_size;
    case LinearSite::O: case LinearSite::Down: return c.hidden_size;
    case LinearSite::Head: return c.vocab_size;
  }
  return 0;
}

void split_fused_modules(Adapter& adapter, const ModelConfig& c) {
  if (!c.fused_linears || adapter.fused_modules) return;  // (split already)
  adapter.fused_modules = true;
  std::map<std::string, LoraFactors> linears;
  for (auto& [path, f] : adapter.linears) {
    const auto ref = parse_module_path(path);
    if (ref && ref->kind == ModuleRef::Kind::Linear && !ref->fused && fused_module_of(ref->site, c))
      fail_format(adapter.source, "tensor '{}' is for module '{}', which a {} model does not have (it fuses it into {})",
                  adapter_tensor_name(adapter, path, "lora_A"), path, c.model_type,
                  file_module_path(ref->layer, ref->site, c));
    if (!ref || !ref->fused) {
      linears[path] = f;
      continue;
    }
    const FusedModule& fm = fused_of_ref(*ref);
    int64_t rows = 0;
    for (LinearSite s : fm.parts) rows += site_rows(s, c);
    if (f.b.ndim() != 2 || f.b.dim(0) != rows)
      fail_shape(adapter, path, "lora_B", f.b, {rows, f.rank()},
                 fmt::format("{} has {} outputs", path, rows));
    if (!f.magnitude.empty() && f.magnitude.shape() != std::vector<int64_t>{rows})
      fail_shape(adapter, path, "lora_magnitude_vector", f.magnitude, {rows}, fmt::format("{} has {} outputs", path, rows));
    int64_t begin = 0;
    for (LinearSite s : fm.parts) {
      const int64_t end = begin + site_rows(s, c);
      LoraFactors part{f.a, f.b.slice_rows(begin, end).clone(), Tensor(), f.scaling, f.e};
      if (!f.magnitude.empty()) part.magnitude = f.magnitude.slice_rows(begin, end).clone();
      linears[module_path(ref->layer, s)] = std::move(part);
      begin = end;
    }
  }
  adapter.linears = std::move(linears);
  for (const auto& [path, t] : adapter.biases) {
    const auto ref = parse_module_path(path);
    if (ref && ref->fused) fail_format(adapter.source, "tensor '{}': a bias of a fused module is not supported",
                                       adapter_tensor_name(adapter, path, "bias"));
  }
}

std::map<std::string, Tensor> with_fused_parts(std::map<std::string, Tensor> tensors, const ModelConfig& c) {
  if (!c.fused_linears) return tensors;
  static const std::regex re(R"((.*model\.layers\.)(\d{1,9})\.(self_attn\.qkv_proj|mlp\.gate_up_proj)\.(.+))");
  std::map<std::string, Tensor> parts;
  for (const auto& [name, t] : tensors) {
    std::smatch m;
    if (!std::regex_match(name, m, re)) continue;
    const int64_t layer = std::stoll(m[2]);
    const ModuleRef ref = *parse_module_path(fmt::format("model.layers.{}.{}", layer, m[3].str()));
    const std::string leaf = m[4];
    const bool shared = leaf.rfind("lora_A", 0) == 0 || leaf.rfind("lora_E", 0) == 0;  // (one A and E for the parts)
    int64_t begin = 0;
    for (LinearSite s : fused_module_holding(ref.site)->parts) {
      const int64_t rows = site_rows(s, c);
      const std::string part = m[1].str() + std::to_string(layer) + "." + site_module_name(s) + "." + leaf;
      if (shared) parts[part] = t;
      else if (t.ndim() >= 1 && begin + rows <= t.dim(0)) parts[part] = t.slice_rows(begin, begin + rows);
      begin += rows;
    }
  }
  tensors.merge(parts);
  return tensors;
}

Adapter join_fused_modules(const Adapter& adapter) {
  if (!adapter.fused_modules) return adapter;
  Adapter joined = adapter;
  joined.fused_modules = false;
  joined.linears.clear();
  std::set<std::string> done;
  for (const auto& [path, f] : adapter.linears) {
    const auto ref = parse_module_path(path);
    const FusedModule* fm = ref && ref->kind == ModuleRef::Kind::Linear && !ref->fused ? fused_module_holding(ref->site) : nullptr;
    if (!fm) {
      joined.linears[path] = f;
      continue;
    }
    const std::string fused_path = fmt::format("model.layers.{}.{}", ref->layer, fm->hf);
    if (!done.insert(fused_path).second) continue;
    std::vector<Tensor> bs, ms;
    const LoraFactors* first = nullptr;
    for (LinearSite s : fm->parts) {
      const std::string part_path = module_path(ref->layer, s);
      auto it = adapter.linears.find(part_path);
      if (it == adapter.linears.end())
        fail("{}: {} has a LoRA but {} has none: {} cannot be written as one module", adapter.source.empty() ? "the adapter" : adapter.source,
             path, part_path, fused_path);
      const LoraFactors& p = it->second;
      if (!first) first = &p;
      if (!same_values(p.a, first->a) || p.scaling != first->scaling || p.magnitude.empty() != first->magnitude.empty() ||
          p.e.empty() != first->e.empty() || (!p.e.empty() && !same_values(p.e, first->e)))
        fail("{}: the parts of {} have different LoRA A factors (or scalings): they cannot be written as one module",
             adapter.source.empty() ? "the adapter" : adapter.source, fused_path);
      bs.push_back(p.b.dtype() == DType::F32 ? p.b : p.b.to(DType::F32));
      if (!p.magnitude.empty()) ms.push_back(p.magnitude.dtype() == DType::F32 ? p.magnitude : p.magnitude.to(DType::F32));
    }
    LoraFactors g{first->a, Tensor::concat_rows(bs), ms.empty() ? Tensor() : Tensor::concat_rows(ms), first->scaling, first->e};
    joined.linears[fused_path] = std::move(g);
  }
  return joined;
}

std::string module_path(int64_t layer, LinearSite site) {
  if (site == LinearSite::Head) return "lm_head";
  return fmt::format("model.layers.{}.{}", layer, names_of(site).hf);
}

const char* site_module_name(LinearSite site) { return site == LinearSite::Head ? "lm_head" : names_of(site).hf; }
const char* site_gguf_name(LinearSite site) { return site == LinearSite::Head ? "output" : names_of(site).gguf; }

const Tensor& base_linear_weight(const Model& base, const ModuleRef& m) {
  if (m.kind == ModuleRef::Kind::Head) return base.weights.lm_head;
  if (m.kind == ModuleRef::Kind::Embedding) return base.weights.tok_embeddings;
  return base.weights.layers.at(size_t(m.layer)).*names_of(m.site).weight;
}

const Tensor& base_linear_bias(const Model& base, const ModuleRef& m) {
  static const Tensor none;
  if (m.kind != ModuleRef::Kind::Linear || !names_of(m.site).bias) return none;
  return base.weights.layers.at(size_t(m.layer)).*names_of(m.site).bias;
}

Tensor& base_linear_weight(Model& model, const ModuleRef& m) {
  return const_cast<Tensor&>(base_linear_weight(static_cast<const Model&>(model), m));
}

Tensor& base_linear_bias(Model& model, const ModuleRef& m) {
  if (m.kind != ModuleRef::Kind::Linear || !names_of(m.site).bias) fail("{} has no bias", site_module_name(m.site));
  return model.weights.layers.at(size_t(m.layer)).*names_of(m.site).bias;
}

std::string gguf_architecture(const ModelConfig& c) { return model_family(c.model_type).gguf_arch; }

std::string adapter_tensor_name(const Adapter& adapter, const std::string& module, const std::string& part) {
  const auto ref = parse_module_path(module);
  const bool embedding = ref && ref->kind == ModuleRef::Kind::Embedding;
  if (adapter.format == "gguf") {
    std::string base = module;
    if (embedding) base = "token_embd";
    else if (ref && ref->kind == ModuleRef::Kind::Head) base = "output";
    else if (ref) base = fmt::format("blk.{}.{}", ref->layer, module_gguf_name(*ref));
    return base + ".weight" + (part == "lora_A" ? ".lora_a" : part == "lora_B" ? ".lora_b" : "." + part);
  }
  const std::string key = "base_model.model." + module;
  if (adapter.is_adalora() && (part == "lora_A" || part == "lora_B" || part == "lora_E"))
    return key + "." + part;  // PEFT's AdaLoRA parameters carry no ".weight"
  if (part == "lora_A" || part == "lora_B")
    return embedding ? key + ".lora_embedding_" + part.back() : key + "." + part + ".weight";
  if (part == "bias") return key + (adapter.linears.count(module) ? ".base_layer.bias" : ".bias");
  return key + "." + part;
}

Adapter as_plain_lora(const Adapter& adapter) {
  if (!adapter.is_adalora()) return adapter;
  Adapter plain = adapter;
  plain.linears.clear();
  for (const auto& [path, f] : adapter.linears) {
    const int64_t in = f.a.dim(1), out = f.b.dim(0);
    std::vector<int64_t> kept;
    for (int64_t k = 0; k < f.rank(); ++k)
      if (f.e.f32()[k] != 0.0f) kept.push_back(k);
    if (kept.empty()) continue;
    const int64_t r = int64_t(kept.size());
    LoraFactors g{Tensor(DType::F32, {r, in}), Tensor(DType::F32, {out, r}), Tensor(), f.scaling};
    for (int64_t j = 0; j < r; ++j) {
      const int64_t k = kept[size_t(j)];
      const float ek = f.e.f32()[k];
      for (int64_t i = 0; i < in; ++i) g.a.f32()[j * in + i] = ek * f.a.f32()[k * in + i];
      for (int64_t o = 0; o < out; ++o) g.b.f32()[o * r + j] = f.b.f32()[o * f.rank() + k];
    }
    plain.linears[path] = std::move(g);
  }
  LoraConfig base = adapter.config;
  base.adalora.reset();
  plain.config = describe_factors(plain, base);
  plain.original_config.clear();  // the AdaLoRA config no longer describes these factors
  return plain;
}

LoraConfig describe_factors(const Adapter& adapter, const LoraConfig& base) {
  struct Module {
    std::string path;
    int64_t rank;
    float alpha;  // scaling · r
    float scaling;
  };
  std::vector<Module> modules;
  for (const auto& [path, f] : adapter.linears) modules.push_back({path, f.rank(), float(double(f.scaling) * double(f.rank())), f.scaling});
  if (adapter.embedding)
    modules.push_back({"model.embed_tokens", adapter.embedding->rank(),
                       float(double(adapter.embedding->scaling) * double(adapter.embedding->rank())), adapter.embedding->scaling});

  LoraConfig c = base;
  c.use_rslora = false;  // every scaling below is alpha / r
  c.use_dora = adapter.uses_dora();
  c.init_lora_weights = "true";
  c.rank_pattern.clear();
  c.alpha_pattern.clear();
  c.target_modules_regex.clear();
  c.target_modules.clear();
  c.exclude_modules.clear();
  c.layers_to_transform.clear();
  c.modules_to_save.clear();
  for (const auto& [path, t] : adapter.replaced) c.modules_to_save.push_back(path == "lm_head" ? "lm_head" : "embed_tokens");
  if (modules.empty()) return c;

  auto mode = [&](auto key) {
    std::map<decltype(key(modules[0])), int> counts;
    for (const Module& m : modules) ++counts[key(m)];
    return std::max_element(counts.begin(), counts.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
  };
  // scaling = alpha / r exactly as LoraConfig::scaling_for computes it.
  auto reproduces = [](float alpha, int64_t rank, float scaling) { return float(double(alpha) / double(rank)) == scaling; };
  c.r = mode([](const Module& m) { return m.rank; });
  bool base_alpha_works = true;
  for (const Module& m : modules) base_alpha_works = base_alpha_works && reproduces(base.lora_alpha, m.rank, m.scaling);
  if (!base_alpha_works) c.lora_alpha = mode([](const Module& m) { return m.alpha; });
  for (const Module& m : modules) {
    if (m.rank != c.r) c.rank_pattern[m.path] = m.rank;
    if (!reproduces(c.lora_alpha, m.rank, m.scaling)) c.alpha_pattern[m.path] = m.alpha;
  }

  // target_modules: a module kind present in every layer is named by its short name, otherwise every
  // adapted module is listed by its full path (PEFT matches both).
  int64_t n_layers = 0;
  std::map<std::string, std::set<int64_t>> layers_of;  // "q_proj" -> layers that have it
  for (const Module& m : modules) {
    const auto ref = parse_module_path(m.path);
    if (ref && ref->kind == ModuleRef::Kind::Linear) {
      n_layers = std::max(n_layers, ref->layer + 1);
      const std::string hf = module_name(*ref);
      layers_of[hf.substr(hf.find('.') + 1)].insert(ref->layer);
    }
  }
  std::set<std::string> targets;
  for (const Module& m : modules) {
    const auto ref = parse_module_path(m.path);
    if (!ref || ref->kind != ModuleRef::Kind::Linear) {
      targets.insert(ref && ref->kind == ModuleRef::Kind::Embedding ? "embed_tokens" : "lm_head");
      continue;
    }
    const std::string hf = module_name(*ref);
    const std::string short_name = hf.substr(hf.find('.') + 1);
    targets.insert(int64_t(layers_of[short_name].size()) == n_layers ? short_name : m.path);
  }
  c.target_modules.assign(targets.begin(), targets.end());
  return c;
}

void check_adapter_fits(Adapter& adapter, const Model& base) {
  const ModelConfig& c = base.config;
  if (!adapter.architecture.empty() && adapter.architecture != gguf_architecture(c))
    fail_format(adapter.source, "the adapter is for architecture '{}', but the base model ({}) is '{}'", adapter.architecture,
                base.source_path, gguf_architecture(c));
  split_fused_modules(adapter, c);  // (Phi-3: the parts, as the model holds them)

  auto check_module = [&](const std::string& path, const std::string& part) -> ModuleRef {
    const auto ref = parse_module_path(path);
    const std::string name = adapter_tensor_name(adapter, path, part);
    if (!ref) fail_format(adapter.source, "tensor '{}' is for module '{}', which a Llama-family model does not have", name, path);
    if (ref->fused)
      fail_format(adapter.source, "tensor '{}' is for module '{}', which a {} model does not have (its q/k/v and gate/up "
                                  "are modules of their own)", name, path, c.model_type);

    if (ref->kind == ModuleRef::Kind::Linear && ref->layer >= c.num_hidden_layers)
      fail_format(adapter.source, "tensor '{}' is for layer {}, but the base model has {} layers", name, ref->layer,
                  c.num_hidden_layers);
    return *ref;
  };

  // In model order: the embedding, the layers, the head.
  if (adapter.embedding) {
    const LoraFactors& e = *adapter.embedding;
    const int64_t r = e.a.ndim() == 2 ? e.a.dim(0) : 0;
    if (e.a.ndim() != 2 || e.a.dim(1) != c.vocab_size)
      fail_shape(adapter, "model.embed_tokens", "lora_A", e.a, {r, c.vocab_size}, fmt::format("a vocabulary of {}", c.vocab_size));
    if (e.b.ndim() != 2 || e.b.dim(0) != c.hidden_size || e.b.dim(1) != r)
      fail_shape(adapter, "model.embed_tokens", "lora_B", e.b, {c.hidden_size, r},
                 fmt::format("hidden size {}, lora_embedding_A rank {}", c.hidden_size, r));
  }
  for (const std::string& path : in_model_order(keys_of(adapter.linears))) {
    const LoraFactors& f = adapter.linears.at(path);
    const ModuleRef ref = check_module(path, "lora_A");
    if (ref.kind == ModuleRef::Kind::Embedding)
      fail_format(adapter.source, "tensor '{}': the embedding's LoRA is stored as lora_embedding_A/B",
                  adapter_tensor_name(adapter, path, "lora_A"));
    const Tensor& w = base_linear_weight(base, ref);
    const int64_t out = w.dim(0), in = w.dim(1), r = f.a.ndim() == 2 ? f.a.dim(0) : 0;
    if (f.a.ndim() != 2 || f.a.dim(1) != in)
      fail_shape(adapter, path, "lora_A", f.a, {r, in}, fmt::format("{} has {} inputs", path, in));
    if (f.b.ndim() != 2 || f.b.dim(0) != out || f.b.dim(1) != r)
      fail_shape(adapter, path, "lora_B", f.b, {out, r}, fmt::format("{} has {} outputs, lora_A rank {}", path, out, r));
    if (!f.magnitude.empty() && f.magnitude.shape() != std::vector<int64_t>{out})
      fail_shape(adapter, path, "lora_magnitude_vector", f.magnitude, {out}, fmt::format("{} has {} outputs", path, out));
  }
  for (const std::string& path : in_model_order(keys_of(adapter.biases))) {
    const ModuleRef ref = check_module(path, "bias");
    const Tensor& bias = ref.kind == ModuleRef::Kind::Linear ? base_linear_bias(base, ref) : Tensor();
    if (bias.empty())
      fail_format(adapter.source, "tensor '{}' is a bias, but the base model's {} has none",
                  adapter_tensor_name(adapter, path, "bias"), path);
    if (adapter.biases.at(path).shape() != bias.shape())
      fail_shape(adapter, path, "bias", adapter.biases.at(path), bias.shape(), fmt::format("{} has {} outputs", path, bias.numel()));
  }
  const std::vector<int64_t> table = {c.vocab_size, c.hidden_size};
  for (auto* weights : {&adapter.replaced, &adapter.embedding_layers})
    for (const auto& [path, t] : *weights) {
      const bool saved_layer = weights == &adapter.embedding_layers;
      const std::string part = saved_layer ? "base_layer.weight" : "weight";
      const ModuleRef ref = check_module(path, part);
      if (ref.kind == ModuleRef::Kind::Linear)
        fail_format(adapter.source, "tensor '{}' replaces {}: only embed_tokens and lm_head can be modules_to_save here",
                    adapter_tensor_name(adapter, path, part), path);
      if (t.shape() != table) fail_shape(adapter, path, part, t, table, "the vocabulary by the hidden size");
    }
  for (auto it = adapter.embedding_layers.begin(); it != adapter.embedding_layers.end();) {
    const Tensor& base_weight = it->first == "lm_head" ? base.weights.lm_head : base.weights.tok_embeddings;
    it = same_values(it->second, base_weight) ? adapter.embedding_layers.erase(it) : std::next(it);
  }

  // PEFT creates a LoRA on every module the config targets; a file without one is incomplete.
  if (adapter.format == "peft") {
    for (int64_t l = 0; l < c.num_hidden_layers; ++l)
      for (int s = 0; s < kNumLayerSites; ++s) {
        const std::string path = module_path(l, LinearSite(s)), file_path = file_module_path(l, LinearSite(s), c);
        if (adapter.config.targets(file_path) && !adapter.linears.count(path))
          fail_format(adapter.source, "tensor '{}' is missing (adapter_config.json targets {})",
                      adapter_tensor_name(adapter, file_path, "lora_A"), file_path);
      }
    if (adapter.config.targets("model.embed_tokens") && !adapter.embedding)
      fail_format(adapter.source, "tensor '{}' is missing (adapter_config.json targets model.embed_tokens)",
                  adapter_tensor_name(adapter, "model.embed_tokens", "lora_A"));
    if (adapter.config.targets("lm_head") && !adapter.linears.count("lm_head"))
      fail_format(adapter.source, "tensor '{}' is missing (adapter_config.json targets lm_head)",
                  adapter_tensor_name(adapter, "lm_head", "lora_A"));
  }
}

}  // namespace lora
