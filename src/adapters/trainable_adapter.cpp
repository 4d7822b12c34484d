#include "adapters/trainable_adapter.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "core/error.h"

namespace lora {

namespace {

LoraFactors factors_of(const LoraLinear& l, bool pissa) {
  LoraFactors f;
  f.scaling = l.scaling;
  if (l.use_dora) f.magnitude = l.magnitude.clone();
  if (l.adalora()) f.e = l.lora_e.clone();
  if (!pissa) {
    f.a = l.lora_a.clone();
    f.b = l.lora_b.clone();
    return f;
  }
  // PiSSA trains A, B on the residual W − s·B₀A₀. On the original W the same model is
  // W + s·(BA − B₀A₀) = W + s·[B, −B₀]·[A; A₀]: a plain LoRA of rank 2r.
  const int64_t r = l.r, in = l.in_features, o = l.out_features;
  f.a = Tensor(DType::F32, {2 * r, in});
  f.b = Tensor(DType::F32, {o, 2 * r});
  std::memcpy(f.a.f32(), l.lora_a.f32(), l.lora_a.nbytes());
  std::memcpy(f.a.f32() + r * in, l.pissa_a0.f32(), l.pissa_a0.nbytes());
  for (int64_t i = 0; i < o; ++i)
    for (int64_t k = 0; k < r; ++k) {
      f.b.f32()[i * 2 * r + k] = l.lora_b.f32()[i * r + k];
      f.b.f32()[i * 2 * r + r + k] = -l.pissa_b0.f32()[i * r + k];
    }
  return f;
}

// AdaLoRA once its budget is final (rank_pattern set): PEFT saves only the kept triplets (rows of lora_A
// and lora_E, columns of lora_B). A module still at init_r is sliced; one loaded already sliced stays.
void slice_to_kept(LoraFactors& f, const std::vector<bool>& kept) {
  const int64_t r = f.rank(), in = f.a.dim(1), out = f.b.dim(0);
  if (int64_t(kept.size()) != r) return;
  const int64_t n = std::count(kept.begin(), kept.end(), true);
  LoraFactors g{Tensor(DType::F32, {n, in}), Tensor(DType::F32, {out, n}), Tensor(), f.scaling, Tensor(DType::F32, {n, 1})};
  for (int64_t k = 0, j = 0; k < r; ++k) {
    if (!kept[size_t(k)]) continue;
    std::memcpy(g.a.f32() + j * in, f.a.f32() + k * in, size_t(in) * sizeof(float));
    g.e.f32()[j] = f.e.f32()[k];
    for (int64_t o = 0; o < out; ++o) g.b.f32()[o * n + j] = f.b.f32()[o * r + k];
    ++j;
  }
  f = std::move(g);
}

void copy_into(Tensor& dst, const Tensor& src, const std::string& source, const std::string& what) {
  if (dst.shape() != src.shape())
    fail_format(source, "{} has shape {}, but the model its adapter_config.json describes needs {}", what, src.shape_str(),
                dst.shape_str());
  const Tensor f = src.dtype() == DType::F32 ? src : src.to(DType::F32);
  std::memcpy(dst.data(), f.data(), f.nbytes());
}

}  // namespace

Adapter adapter_from_trainable(const TrainableModel& model) {
  if (model.type() != FinetuningType::Lora) fail("only LoRA fine-tuning produces an adapter; full/freeze save whole models");
  TrainableModel& m = const_cast<TrainableModel&>(model);  // the embedding/head LoRA accessors are not const
  const Model& base = model.base();
  LoraConfig config = model.lora_config();
  if (config.base_model_name_or_path.empty()) config.base_model_name_or_path = base.source_path;
  const bool pissa = config.init_lora_weights == "pissa";

  Adapter a;
  const ModelConfig& c = base.config;
  a.fused_modules = c.fused_linears;  // (Phi-3: the parts here, joined when written)
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    for (int p = 0; p < kNumProj; ++p) {
      const LinearSlot& s = model.slot(l, Proj(p));
      const std::string path = module_path(l, LinearSite(p));
      if (s.lora) a.linears[path] = factors_of(*s.lora, pissa);
      if (!s.bias_grad.empty()) a.biases[path] = s.bias.clone();
    }
  if (const EmbeddingLora* e = m.embedding_lora()) {
    a.embedding = LoraFactors{e->lora_embedding_a.clone(), e->lora_embedding_b.clone(), Tensor(), e->scaling};
    a.embedding_layers["model.embed_tokens"] = base.weights.tok_embeddings;
  }
  if (const LoraLinear* head = m.lm_head_lora()) {
    a.linears["lm_head"] = factors_of(*head, pissa);
    a.embedding_layers["lm_head"] = base.weights.lm_head;
  }
  for (const std::string& module : config.modules_to_save) {
    if (module == "lm_head") a.replaced["lm_head"] = model.weights().lm_head.clone();
    else a.replaced["model.embed_tokens"] = model.weights().tok_embeddings.clone();
  }

  if (config.adalora && !config.adalora->rank_pattern.empty()) {
    for (const auto& [name, kept] : config.adalora->rank_pattern) {
      const std::string module = name.substr(0, name.size() - std::string(".lora_E").size());
      const auto ref = parse_module_path(module);
      if (!ref) continue;
      // (a fused module's kept triplets are every part's: their A and E are one)
      std::vector<std::string> paths = {module};
      if (ref->fused) {
        paths.clear();
        for (LinearSite s : fused_module_holding(ref->site)->parts) paths.push_back(module_path(ref->layer, s));
      }
      for (const std::string& path : paths) {
        auto it = a.linears.find(path);
        if (it != a.linears.end()) {
          slice_to_kept(it->second, kept);
        } else if (std::count(kept.begin(), kept.end(), true) == 0) {
          // loaded with no triplet left: no layer here, but PEFT lists the module at rank 0
          const Tensor& w = base_linear_weight(base, *parse_module_path(path));
          a.linears[path] = LoraFactors{Tensor(DType::F32, {0, w.dim(1)}), Tensor(DType::F32, {w.dim(0), 0}), Tensor(),
                                        config.scaling_for(module), Tensor(DType::F32, {0, 1})};
        }
      }
    }
  }
  if (pissa) {  // rank 2r everywhere; alpha/r (rsLoRA: alpha/√r) must stay the same scaling
    config.r *= 2;
    for (auto& [k, v] : config.rank_pattern) v *= 2;
    const float f = config.use_rslora ? std::sqrt(2.0f) : 2.0f;
    config.lora_alpha *= f;
    for (auto& [k, v] : config.alpha_pattern) v *= f;
    config.init_lora_weights = "true";
  }
  a.config = config;
  return a;
}

TrainableModel trainable_from_adapter(const Model& base, const Adapter& a) {
  if (!a.embedding_layers.empty())
    fail_format(a.source, "tensor '{}' replaces the base model's weight with another one (PEFT's saved embedding layer "
                          "differs from this base): apply this adapter for inference or merge it instead",
                adapter_tensor_name(a, a.embedding_layers.begin()->first, "base_layer.weight"));
  LoraConfig config = a.config;
  config.init_lora_weights = "true";  // the values come from the adapter
  TrainableModel m = TrainableModel::lora(base, config, 0);

  std::set<std::string> used;
  auto take = [&](const std::string& path) -> const LoraFactors& {
    auto it = a.linears.find(path);
    if (it == a.linears.end())
      fail_format(a.source, "tensor '{}' is missing (the adapter's config targets {})", adapter_tensor_name(a, path, "lora_A"), path);
    used.insert(path);
    return it->second;
  };
  auto fill = [&](LoraLinear& l, const std::string& path) {
    const LoraFactors& f = take(path);
    copy_into(l.lora_a, f.a, a.source, adapter_tensor_name(a, path, "lora_A"));
    copy_into(l.lora_b, f.b, a.source, adapter_tensor_name(a, path, "lora_B"));
    if (l.use_dora != !f.magnitude.empty())
      fail_format(a.source, "{}: DoRA magnitude {} (use_dora = {})", path, f.magnitude.empty() ? "missing" : "unexpected", l.use_dora);
    if (l.use_dora) copy_into(l.magnitude, f.magnitude, a.source, adapter_tensor_name(a, path, "lora_magnitude_vector"));
    if (l.adalora() != !f.e.empty())
      fail_format(a.source, "{}: AdaLoRA singular values {} (peft_type {})", path, f.e.empty() ? "missing" : "unexpected",
                  l.adalora() ? "ADALORA" : "LORA");
    if (l.adalora()) copy_into(l.lora_e, f.e, a.source, adapter_tensor_name(a, path, "lora_E"));
  };

  for (int64_t l = 0; l < base.config.num_hidden_layers; ++l)
    for (int p = 0; p < kNumProj; ++p) {
      LinearSlot& s = m.slot(l, Proj(p));
      const std::string path = module_path(l, LinearSite(p));
      if (s.lora) fill(*s.lora, path);
      auto b = a.biases.find(path);
      if (b == a.biases.end()) continue;
      if (s.bias_grad.empty())
        fail_format(a.source, "tensor '{}' is a trained bias, but bias = \"{}\" does not train {}'s",
                    adapter_tensor_name(a, path, "bias"), config.bias, path);
      copy_into(s.bias, b->second, a.source, adapter_tensor_name(a, path, "bias"));
    }
  if (LoraLinear* head = m.lm_head_lora()) fill(*head, "lm_head");
  EmbeddingLora* e = m.embedding_lora();
  if (bool(e) != a.embedding.has_value())
    fail_format(a.source, "the embedding LoRA is {} (target_modules {} embed_tokens)", e ? "missing" : "unexpected",
                e ? "includes" : "does not include");
  if (e) {
    copy_into(e->lora_embedding_a, a.embedding->a, a.source, adapter_tensor_name(a, "model.embed_tokens", "lora_A"));
    copy_into(e->lora_embedding_b, a.embedding->b, a.source, adapter_tensor_name(a, "model.embed_tokens", "lora_B"));
  }
  for (const auto& [path, f] : a.linears)
    if (!used.count(path) && !(a.is_adalora() && f.rank() == 0))  // a pruned AdaLoRA module has no layer
      fail_format(a.source, "tensor '{}' is for {}, which the adapter's config does not target", adapter_tensor_name(a, path, "lora_A"), path);
  for (Param& p : m.params()) {
    const std::string module = p.name == "base_model.model.lm_head.weight"                ? "lm_head"
                               : p.name == "base_model.model.model.embed_tokens.weight" ? "model.embed_tokens"
                                                                                          : "";
    if (module.empty()) continue;
    auto it = a.replaced.find(module);
    if (it != a.replaced.end()) copy_into(*p.value, it->second, a.source, adapter_tensor_name(a, module, "weight"));
  }
  return m;
}

}  // namespace lora
