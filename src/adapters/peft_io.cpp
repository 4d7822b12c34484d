#include "adapters/peft_io.h"

#include <filesystem>
#include <fstream>
#include <cmath>
#include <cstring>
#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "formats/safetensors.h"

namespace lora {

namespace {

// PiSSA trains A, B on the residual W − s·B₀A₀. On the original W the same model is
// W + s·(BA − B₀A₀) = W + s·[B, −B₀]·[A; A₀]: a plain LoRA of rank 2r.
void pissa_to_lora(const LoraLinear& l, const std::string& name_a, const std::string& name_b,
                   std::map<std::string, Tensor>& out) {
  const int64_t r = l.r, in = l.in_features, o = l.out_features;
  Tensor a(DType::F32, {2 * r, in}), b(DType::F32, {o, 2 * r});
  std::memcpy(a.f32(), l.lora_a.f32(), l.lora_a.nbytes());
  std::memcpy(a.f32() + r * in, l.pissa_a0.f32(), l.pissa_a0.nbytes());
  for (int64_t i = 0; i < o; ++i)
    for (int64_t k = 0; k < r; ++k) {
      b.f32()[i * 2 * r + k] = l.lora_b.f32()[i * r + k];
      b.f32()[i * 2 * r + r + k] = -l.pissa_b0.f32()[i * r + k];
    }
  out[name_a] = a;
  out[name_b] = b;
}

// AdaLoRA once its budget is final: PEFT saves only the kept triplets (rows of lora_A and lora_E,
// columns of lora_B); a module that kept none is written with rank 0.
void slice_to_rank_pattern(const TrainableModel& model, const AdaLoraOptions& a, std::map<std::string, Tensor>& out) {
  for (LoraLinear* l : const_cast<TrainableModel&>(model).lora_layers()) {
    const auto it = a.rank_pattern.find(l->path + ".lora_E");
    if (it == a.rank_pattern.end() || l->r != a.init_r) continue;  // not pruned, or already sliced on load
    const std::vector<bool>& kept = it->second;
    const int64_t k_new = std::count(kept.begin(), kept.end(), true), in = l->in_features, o = l->out_features;
    Tensor A(DType::F32, {k_new, in}), E(DType::F32, {k_new, 1}), B(DType::F32, {o, k_new});
    for (int64_t k = 0, j = 0; k < l->r; ++k) {
      if (!kept[size_t(k)]) continue;
      std::memcpy(A.f32() + j * in, l->lora_a.f32() + k * in, size_t(in) * sizeof(float));
      E.f32()[j] = l->lora_e.f32()[k];
      for (int64_t i = 0; i < o; ++i) B.f32()[i * k_new + j] = l->lora_b.f32()[i * l->r + k];
      ++j;
    }
    const std::string key = "base_model.model." + l->path;
    out[key + ".lora_A"] = A;
    out[key + ".lora_E"] = E;
    out[key + ".lora_B"] = B;
  }
  // Modules loaded with no triplet left have no layer here; PEFT still lists them, at rank 0.
  const ModelConfig& c = model.base().config;
  for (const auto& [name, kept] : a.rank_pattern) {
    if (std::count(kept.begin(), kept.end(), true) != 0) continue;
    const std::string path = name.substr(0, name.size() - std::string(".lora_E").size());
    const std::string key = "base_model.model." + path;
    if (out.count(key + ".lora_A")) continue;
    int64_t in = c.hidden_size, o = c.vocab_size;  // lm_head
    if (const auto layer = layer_index_of(path)) {
      for (int p = 0; p < kNumProj; ++p)
        if (path.ends_with(proj_module_path(Proj(p)))) {
          const Tensor& w = model.slot(*layer, Proj(p)).weight;
          in = w.dim(1);
          o = w.dim(0);
        }
    }
    out[key + ".lora_A"] = Tensor(DType::F32, {0, in});
    out[key + ".lora_E"] = Tensor(DType::F32, {0, 1});
    out[key + ".lora_B"] = Tensor(DType::F32, {o, 0});
  }
}

}  // namespace

void save_peft_adapter(const TrainableModel& model, const std::string& dir) {
  if (model.type() != FinetuningType::Lora) fail("only LoRA fine-tuning produces an adapter; full/freeze save whole models");
  LoraConfig config = model.lora_config();
  if (config.base_model_name_or_path.empty()) config.base_model_name_or_path = model.base().source_path;
  const bool pissa = config.init_lora_weights == "pissa";
  std::map<std::string, Tensor> tensors;
  for (const Param& p : const_cast<TrainableModel&>(model).params()) tensors[p.name] = *p.value;
  if (pissa) {
    // rank 2r everywhere the adapter is applied; the saved adapter is an ordinary LoRA
    const ModelConfig& c = model.base().config;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l)
      for (int p = 0; p < kNumProj; ++p)
        if (const LoraLinear* lora = model.slot(l, Proj(p)).lora.get()) {
          const std::string key = "base_model.model." + lora->path;
          pissa_to_lora(*lora, key + ".lora_A.weight", key + ".lora_B.weight", tensors);
        }
    if (const LoraLinear* head = const_cast<TrainableModel&>(model).lm_head_lora())
      pissa_to_lora(*head, "base_model.model.lm_head.lora_A.weight", "base_model.model.lm_head.lora_B.weight", tensors);
    config.r *= 2;
    for (auto& [k, v] : config.rank_pattern) v *= 2;
    // alpha/r must stay the same scaling: double alpha with r (rsLoRA: alpha/√r, so × √2)
    const float f = config.use_rslora ? std::sqrt(2.0f) : 2.0f;
    config.lora_alpha *= f;
    for (auto& [k, v] : config.alpha_pattern) v *= f;
    config.init_lora_weights = "true";
  }
  if (config.adalora && !config.adalora->rank_pattern.empty()) slice_to_rank_pattern(model, *config.adalora, tensors);
  AtomicDirectory out(dir);
  write_file_atomic(out / "adapter_config.json", config.to_peft_json().dump(2) + "\n");
  save_safetensors(out / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  out.commit();
}

TrainableModel load_peft_adapter(const Model& base, const std::string& dir) {
  const std::string config_path = dir + "/adapter_config.json";
  std::ifstream in(config_path);
  if (!in) fail_format(config_path, "cannot open (is '{}' a PEFT adapter folder?)", dir);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail_format(config_path, "invalid JSON: {}", e.what());
  }
  LoraConfig config = LoraConfig::from_peft_json(j, config_path);
  if (config.init_lora_weights == "pissa")
    fail_format(config_path, "a PiSSA adapter saved without conversion needs its residual base model; "
                             "convert it to LoRA first (PEFT: path_initial_model_for_weight_conversion)");
  config.init_lora_weights = "true";  // the values come from the file
  TrainableModel m = TrainableModel::lora(base, config, 0);

  const std::string weights_path = dir + "/adapter_model.safetensors";
  const SafetensorsFile file = SafetensorsFile::open(weights_path);
  std::map<std::string, Param*> by_name;
  for (Param& p : m.params()) by_name[p.name] = &p;
  for (const SafetensorsTensorInfo& t : file.tensors()) {
    auto it = by_name.find(t.name);
    const bool pruned = config.adalora && t.shape.size() == 2 && (t.shape[0] == 0 || t.shape[1] == 0);
    if (it == by_name.end() && pruned) continue;  // an AdaLoRA module that kept no triplet has no adapter
    if (it == by_name.end())
      fail_format(weights_path, "tensor '{}' does not belong to this model's adapter (does the config match, and "
                                "is the base model the one it was trained on?)", t.name);
    Param& p = *it->second;
    if (t.shape != p.value->shape())
      fail_format(weights_path, "tensor '{}' has shape {}, but the base model needs {}", t.name,
                  Tensor(DType::F32, t.shape, nullptr, nullptr).shape_str(), p.value->shape_str());
    const Tensor v = file.load(t.name).to(DType::F32);
    std::memcpy(p.value->data(), v.data(), v.nbytes());
    by_name.erase(it);
  }
  if (!by_name.empty()) fail_format(weights_path, "tensor '{}' is missing", by_name.begin()->first);
  return m;
}

}  // namespace lora
