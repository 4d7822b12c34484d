#include "vision/classifier_adapter.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "formats/safetensors.h"

namespace lora::vision {
namespace {

const std::string kPrefix = "base_model.model.";

bool names(const std::vector<std::string>& list, const std::string& module) {
  // PEFT's list matching: the module's full name, or a suffix of it after a dot.
  return std::any_of(list.begin(), list.end(), [&](const std::string& t) {
    return module == t || (module.size() > t.size() && module.ends_with("." + t));
  });
}

void check_named_modules_exist(const VggModel& model, const std::vector<std::string>& list, const char* what) {
  for (const std::string& t : list) {
    bool found = false;
    for (const VggLayer& l : model.layers)
      if ((l.spec.kind == LayerKind::Conv2d || l.spec.kind == LayerKind::Linear) && names({t}, l.spec.name)) found = true;
    if (!found) fail("{} \"{}\" names no Conv2d or Linear module of this {} (e.g. features.0, classifier.0)", what, t,
                     model.config.architecture);
  }
}

void make_trained_copy(AdaptedLayer& a, const VggLayer& l) {
  a.trained_copy = true;
  a.weight = l.weight.clone();
  a.bias = l.bias.clone();
  a.weight_grad = Tensor(DType::F32, l.weight.shape());
  a.bias_grad = Tensor(DType::F32, l.bias.shape());
}

}  // namespace

std::vector<Param> ClassifierAdapter::params() {
  std::vector<Param> ps;
  for (size_t i = 0; i < layers.size(); ++i) {
    AdaptedLayer& a = layers[i];
    if (a.conv) {
      ps.push_back({a.conv->path + ".lora_A.weight", &a.conv->lora_a, &a.conv->grad_a});
      ps.push_back({a.conv->path + ".lora_B.weight", &a.conv->lora_b, &a.conv->grad_b});
    }
    if (a.linear) {
      ps.push_back({a.linear->path + ".lora_A.weight", &a.linear->lora_a, &a.linear->grad_a});
      ps.push_back({a.linear->path + ".lora_B.weight", &a.linear->lora_b, &a.linear->grad_b});
    }
    if (a.trained_copy) {
      ps.push_back({"layer" + std::to_string(i) + ".weight", &a.weight, &a.weight_grad});
      ps.push_back({"layer" + std::to_string(i) + ".bias", &a.bias, &a.bias_grad, false});
    }
  }
  return ps;
}

int64_t ClassifierAdapter::trainable_count() const {
  int64_t n = 0;
  for (auto& p : const_cast<ClassifierAdapter*>(this)->params()) n += p.value->numel();
  return n;
}

void ClassifierAdapter::zero_grad() {
  for (auto& p : params()) std::fill_n(p.grad->f32(), p.grad->numel(), 0.0f);
}

int ClassifierAdapter::lowest_trainable_layer() const {
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].trainable()) return int(i);
  return int(layers.size());
}

ClassifierAdapter make_classifier_adapter(const VggModel& model, const ClassifierLoraConfig& config, uint64_t seed) {
  check_named_modules_exist(model, config.target_modules, "--target");
  check_named_modules_exist(model, config.modules_to_save, "--modules-to-save");
  if (!config.target_modules.empty() && config.r <= 0) fail("LoRA rank must be positive, got {}", config.r);
  std::mt19937_64 rng(seed);
  ClassifierAdapter a{config, std::vector<AdaptedLayer>(model.layers.size())};
  const float scaling = config.alpha / float(config.r);
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const VggLayer& l = model.layers[i];
    const bool conv = l.spec.kind == LayerKind::Conv2d, linear = l.spec.kind == LayerKind::Linear;
    if (!conv && !linear) continue;
    if (names(config.modules_to_save, l.spec.name)) {
      make_trained_copy(a.layers[i], l);
      continue;  // PEFT: a module in modules_to_save is trained whole, not LoRA-adapted
    }
    if (!names(config.target_modules, l.spec.name)) continue;
    if (conv) {
      a.layers[i].conv = std::make_unique<LoraConv2d>(l.spec.name, l.spec.conv, config.r, scaling, rng);
    } else {
      auto lin = std::make_unique<LoraLinear>(l.spec.name, l.spec.in_features, l.spec.out_features, config.r, scaling,
                                              0.0f, false);
      // PEFT's default: A ~ kaiming_uniform(a = sqrt(5)) = U(−1/sqrt(in), 1/sqrt(in)), B = 0.
      const double bound = 1.0 / std::sqrt(double(l.spec.in_features));
      std::uniform_real_distribution<double> u(-bound, bound);
      for (int64_t k = 0; k < lin->lora_a.numel(); ++k) lin->lora_a.f32()[k] = float(u(rng));
      a.layers[i].linear = std::move(lin);
    }
  }
  return a;
}

ClassifierAdapter make_full_finetune(const VggModel& model) {
  ClassifierAdapter a{{}, std::vector<AdaptedLayer>(model.layers.size())};
  for (size_t i = 0; i < model.layers.size(); ++i)
    if (!model.layers[i].weight.empty()) {
      make_trained_copy(a.layers[i], model.layers[i]);
      a.config.modules_to_save.push_back(model.layers[i].spec.name);
    }
  return a;
}

void save_classifier_adapter(const ClassifierAdapter& adapter, const VggModel& model, const std::string& dir) {
  std::map<std::string, Tensor> tensors;
  for (size_t i = 0; i < adapter.layers.size(); ++i) {
    const AdaptedLayer& a = adapter.layers[i];
    const std::string p = kPrefix + model.layers[i].spec.name;
    if (a.conv) {
      tensors[p + ".lora_A.weight"] = a.conv->lora_a;
      tensors[p + ".lora_B.weight"] = a.conv->lora_b;
    }
    if (a.linear) {
      tensors[p + ".lora_A.weight"] = a.linear->lora_a;
      tensors[p + ".lora_B.weight"] = a.linear->lora_b;
    }
    if (a.trained_copy) {
      tensors[p + ".weight"] = a.weight;
      tensors[p + ".bias"] = a.bias;
    }
  }
  const ClassifierLoraConfig& c = adapter.config;
  nlohmann::json j{{"peft_type", "LORA"},
                   {"task_type", nullptr},
                   {"base_model_name_or_path", c.base_model_name_or_path},
                   {"r", c.r},
                   {"lora_alpha", c.alpha},
                   {"lora_dropout", 0.0},
                   {"target_modules", c.target_modules},
                   {"modules_to_save", c.modules_to_save.empty() ? nlohmann::json(nullptr) : nlohmann::json(c.modules_to_save)},
                   {"bias", "none"},
                   {"fan_in_fan_out", false},
                   {"init_lora_weights", true},
                   {"use_rslora", false},
                   {"use_dora", false},
                   {"rank_pattern", nlohmann::json::object()},
                   {"alpha_pattern", nlohmann::json::object()},
                   {"layers_to_transform", nullptr},
                   {"inference_mode", true}};
  AtomicDirectory out(dir);
  write_file_atomic(out / "adapter_config.json", j.dump(2) + "\n");
  save_safetensors(out / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  out.commit();
}

ClassifierAdapter load_classifier_adapter(const VggModel& model, const std::string& dir) {
  const std::string config_path = dir + "/adapter_config.json";
  std::ifstream in(config_path);
  if (!in) fail_format(config_path, "cannot open (is {} a PEFT adapter folder?)", dir);
  ClassifierLoraConfig c;
  try {
    const nlohmann::json j = nlohmann::json::parse(in);
    if (j.value("peft_type", std::string("LORA")) != "LORA") fail_format(config_path, "peft_type is not LORA");
    c.r = j.at("r").get<int64_t>();
    c.alpha = j.at("lora_alpha").get<float>();
    if (j.at("target_modules").is_string()) fail_format(config_path, "a regex target_modules is not supported here");
    c.target_modules = j.at("target_modules").get<std::vector<std::string>>();
    if (j.contains("modules_to_save") && !j.at("modules_to_save").is_null())
      c.modules_to_save = j.at("modules_to_save").get<std::vector<std::string>>();
    c.base_model_name_or_path = j.value("base_model_name_or_path", std::string());
  } catch (const nlohmann::json::exception& e) {
    fail_format(config_path, "bad adapter_config.json: {}", e.what());
  }
  ClassifierAdapter a = make_classifier_adapter(model, c, 0);
  const std::string path = dir + "/adapter_model.safetensors";
  const SafetensorsFile file = SafetensorsFile::open(path);
  std::map<std::string, bool> used;
  auto fill = [&](const std::string& name, Tensor& dst) {
    const SafetensorsTensorInfo* info = file.find(name);
    if (!info) fail_format(path, "tensor {} is missing (adapter_config.json targets its module)", name);
    if (info->shape != dst.shape())
      fail_format(path, "tensor {} has shape {}, the model needs {}", name, Tensor(DType::F32, info->shape).shape_str(),
                  dst.shape_str());
    const Tensor t = file.load(name).to(DType::F32);
    std::copy_n(t.f32(), t.numel(), dst.f32());
    used[name] = true;
  };
  for (size_t i = 0; i < a.layers.size(); ++i) {
    AdaptedLayer& l = a.layers[i];
    const std::string p = kPrefix + model.layers[i].spec.name;
    if (l.conv) fill(p + ".lora_A.weight", l.conv->lora_a), fill(p + ".lora_B.weight", l.conv->lora_b);
    if (l.linear) fill(p + ".lora_A.weight", l.linear->lora_a), fill(p + ".lora_B.weight", l.linear->lora_b);
    if (l.trained_copy) fill(p + ".weight", l.weight), fill(p + ".bias", l.bias);
  }
  for (const auto& info : file.tensors())
    if (!used.count(info.name)) fail_format(path, "tensor {} belongs to no module adapter_config.json names", info.name);
  return a;
}

VggModel merge_classifier_adapter(const VggModel& model, const ClassifierAdapter& adapter) {
  VggModel m{model.config, {}};
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const VggLayer& l = model.layers[i];
    const AdaptedLayer& a = adapter.layers[i];
    VggLayer out{l.spec, l.weight.empty() ? Tensor() : l.weight.clone(), l.bias.empty() ? Tensor() : l.bias.clone(), l.bn};
    if (a.trained_copy) out.weight = a.weight.clone(), out.bias = a.bias.clone();
    const Tensor delta = a.conv ? a.conv->delta_weight() : a.linear ? a.linear->delta_weight() : Tensor();
    if (!delta.empty())
      for (int64_t k = 0; k < delta.numel(); ++k) out.weight.f32()[k] += delta.f32()[k];
    m.layers.push_back(std::move(out));
  }
  return m;
}

}  // namespace lora::vision
