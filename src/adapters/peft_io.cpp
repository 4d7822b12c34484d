#include "adapters/peft_io.h"

#include <cmath>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "adapters/trainable_adapter.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "formats/safetensors.h"

namespace lora {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kPrefix = "base_model.model.";

// What a PEFT key holds, and for which module.
struct PeftKey {
  enum class Part { A, B, E, Magnitude, EmbeddingA, EmbeddingB, Bias, ModuleToSave, EmbeddingLayer } part;
  std::string module;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

PeftKey classify(const std::string& key, const std::string& path) {
  if (key.rfind(kPrefix, 0) != 0)
    fail_format(path, "tensor '{}' is not a PEFT LoRA tensor (names start with '{}')", key, kPrefix);
  const std::string rest = key.substr(std::string(kPrefix).size());
  using P = PeftKey::Part;
  static const std::pair<const char*, P> suffixes[] = {
      {".lora_A.weight", P::A},
      {".lora_B.weight", P::B},
      {".lora_A", P::A},  // AdaLoRA's parameters carry no ".weight"
      {".lora_B", P::B},
      {".lora_E", P::E},
      {".lora_magnitude_vector.weight", P::Magnitude},  // the in-memory name of newer PEFT versions
      {".lora_magnitude_vector", P::Magnitude},
      {".lora_embedding_A", P::EmbeddingA},
      {".lora_embedding_B", P::EmbeddingB},
      {".base_layer.bias", P::Bias},
      {".base_layer.weight", P::EmbeddingLayer},
      {".bias", P::Bias},
      {".weight", P::ModuleToSave},
  };
  if (ends_with(rest, ".lora_B.bias"))
    fail_format(path, "tensor '{}' is a LoRA bias (lora_bias = true), which is not supported", key);
  for (const auto& [suffix, part] : suffixes)
    if (ends_with(rest, suffix)) {
      PeftKey k{part, rest.substr(0, rest.size() - std::string(suffix).size())};
      if (!parse_module_path(k.module))
        fail_format(path, "tensor '{}' is for module '{}', which a Llama-family model does not have", key, k.module);
      return k;
    }
  fail_format(path, "tensor '{}' is not one PEFT writes for a LoRA adapter", key);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_format(path, "cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The folder holding adapter_config.json: `dir` itself, or its only sub-folder that has one.
std::string adapter_folder(const std::string& dir, std::string& name) {
  std::error_code ec;
  if (fs::exists(fs::path(dir) / "adapter_config.json", ec)) return dir;
  if (!fs::is_directory(dir, ec)) fail_format(dir, "no such adapter folder");
  std::vector<std::string> named;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_directory() && fs::exists(entry.path() / "adapter_config.json")) named.push_back(entry.path().filename());
  std::sort(named.begin(), named.end());
  if (named.size() == 1) {
    name = named[0];
    return (fs::path(dir) / named[0]).string();
  }
  if (named.empty()) fail_format(dir, "not a PEFT adapter folder (no adapter_config.json)");
  fail_format(dir, "holds several adapters ({}); name one of them: {}/<name>", fmt::join(named, ", "), dir);
}

// PEFT initializations whose saved weights only make sense on a base the initialization changed.
void check_init(const json& j, const std::string& path) {
  if (!j.contains("init_lora_weights") || !j["init_lora_weights"].is_string()) return;
  const std::string init = j["init_lora_weights"].get<std::string>();
  if (init.rfind("pissa", 0) == 0 || init == "olora" || init == "corda" || init == "loftq")
    fail_format(path, "init_lora_weights is '{}': the adapter was saved for the residual base model that initialization "
                      "produced; convert it to a plain LoRA first (PEFT: path_initial_model_for_weight_conversion)", init);
}

LoraConfig parse_config_json(json j, const std::string& path);

// nlohmann converts a JSON number to the C++ type asked for with a plain cast, undefined for a double past the
// type's range ("r": 2.2e20 as int64_t, "lora_alpha": 1e39 as float): such a number is refused first.
void check_number_ranges(const json& config, const std::string& path) {
  std::vector<std::pair<std::string, const json*>> todo = {{"", &config}};
  while (!todo.empty()) {
    const auto [where, v] = todo.back();
    todo.pop_back();
    if (v->is_number_float()) {
      const double x = v->get<double>();
      if (!(std::fabs(x) < 9.2e18))
        fail_format(path, "{}: the number {} is out of range", where.empty() ? "adapter_config.json" : where, x);
    } else if (v->is_object()) {
      for (const auto& [key, item] : v->items()) todo.emplace_back(where.empty() ? key : where + "." + key, &item);
    } else if (v->is_array()) {
      for (size_t i = 0; i < v->size(); ++i) todo.emplace_back(where + "[" + std::to_string(i) + "]", &(*v)[i]);
    }
  }
}

LoraConfig parse_config(const std::string& text, const std::string& path) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail_format(path, "invalid JSON");
  check_number_ranges(j, path);
  try {
    return parse_config_json(std::move(j), path);
  } catch (const json::exception& e) {  // a key of the wrong type ("peft_type": 85)
    fail_format(path, "invalid adapter_config.json: {}", e.what());
  }
}

LoraConfig parse_config_json(json j, const std::string& path) {
  const std::string type = j.value("peft_type", std::string("LORA"));
  if (type != "LORA" && type != "ADALORA")
    fail_format(path, "peft_type is '{}': only LoRA and AdaLoRA adapters (peft_type LORA, ADALORA) are read here", type);
  check_init(j, path);
  if (j.value("fan_in_fan_out", false)) fail_format(path, "fan_in_fan_out = true is for GPT-2 style Conv1D layers, not Llama");
  if (j.value("lora_bias", false)) fail_format(path, "lora_bias = true is not supported");
  if (j.contains("layer_replication") && !j["layer_replication"].is_null())
    fail_format(path, "layer_replication is not supported");
  if (j.contains("init_lora_weights") && j["init_lora_weights"].is_string()) {
    const std::string init = j["init_lora_weights"].get<std::string>();
    if (init != "gaussian" && init != "pissa") j["init_lora_weights"] = true;  // eva, ...: the values come from the file
  }
  return LoraConfig::from_peft_json(j, path);
}

}  // namespace

Adapter read_peft_adapter(const std::string& dir_arg) {
  std::string name;
  const std::string dir = adapter_folder(dir_arg, name);
  Adapter a;
  a.name = name;
  a.source = dir;
  a.format = "peft";
  const std::string config_path = dir + "/adapter_config.json";
  a.original_config = read_text_file(config_path);
  a.config = parse_config(a.original_config, config_path);
  const LoraConfig& c = a.config;

  const std::string weights_path = dir + "/adapter_model.safetensors";
  std::error_code ec;
  if (!fs::exists(weights_path, ec)) {
    if (fs::exists(dir + "/adapter_model.bin", ec))
      fail_format(dir + "/adapter_model.bin", "a pickled PyTorch file; only adapter_model.safetensors is read "
                                              "(save with safe_serialization=True)");
    fail_format(weights_path, "missing");
  }
  const SafetensorsFile file = SafetensorsFile::open(weights_path);
  a.source = weights_path;  // errors about tensors name the file that holds them
  bool first = true;
  for (const SafetensorsTensorInfo& info : file.tensors()) {
    if (!info.dtype || (*info.dtype != DType::F32 && *info.dtype != DType::F16 && *info.dtype != DType::BF16))
      fail_format(weights_path, "tensor '{}' has dtype {}, expected F32, F16 or BF16", info.name, info.dtype_name);
    const PeftKey k = classify(info.name, weights_path);
    Tensor t = file.load(info.name);
    if (first) a.stored_dtype = t.dtype(), first = false;
    if (t.dtype() != DType::F32) t = t.to(DType::F32);
    const auto ref = parse_module_path(k.module);
    const bool embedding = ref->kind == ModuleRef::Kind::Embedding;
    using P = PeftKey::Part;
    auto need_target = [&] {
      if (!c.targets(k.module))
        fail_format(weights_path, "tensor '{}' is for {}, which adapter_config.json does not target", info.name, k.module);
    };
    auto need_2d = [&] {
      if (t.ndim() != 2) fail_format(weights_path, "tensor '{}' has shape {}, expected a matrix", info.name, t.shape_str());
    };
    switch (k.part) {
      case P::E:
        if (!c.adalora) fail_format(weights_path, "tensor '{}' is AdaLoRA's lora_E, but peft_type is not ADALORA", info.name);
        [[fallthrough]];
      case P::A:
      case P::B:
      case P::Magnitude: {
        if (embedding) fail_format(weights_path, "tensor '{}': the embedding's LoRA is lora_embedding_A/B", info.name);
        need_target();
        if (k.part == P::Magnitude && !c.use_dora)
          fail_format(weights_path, "tensor '{}' is a DoRA magnitude, but adapter_config.json has use_dora = false", info.name);
        if (k.part == P::Magnitude && t.ndim() != 1)
          fail_format(weights_path, "tensor '{}' has shape {}, expected a vector", info.name, t.shape_str());
        if (k.part != P::Magnitude) need_2d();
        LoraFactors& f = a.linears[k.module];
        (k.part == P::A ? f.a : k.part == P::B ? f.b : k.part == P::E ? f.e : f.magnitude) = t;
        f.scaling = c.scaling_for(k.module);
        break;
      }
      case P::EmbeddingA:
      case P::EmbeddingB:
        if (!embedding) fail_format(weights_path, "tensor '{}': lora_embedding_A/B belong to the embedding", info.name);
        need_target();
        need_2d();
        if (!a.embedding) a.embedding.emplace();
        (k.part == P::EmbeddingA ? a.embedding->a : a.embedding->b) = t;
        a.embedding->scaling = c.scaling_for(k.module);
        break;
      case P::Bias:
        if (c.bias == "none") fail_format(weights_path, "tensor '{}' is a bias, but adapter_config.json has bias = \"none\"", info.name);
        if (t.ndim() != 1) fail_format(weights_path, "tensor '{}' has shape {}, expected a vector", info.name, t.shape_str());
        a.biases[k.module] = t;
        break;
      case P::ModuleToSave:
      case P::EmbeddingLayer:
        if (ref->kind == ModuleRef::Kind::Linear)
          fail_format(weights_path, "tensor '{}' is a whole {} weight: only embed_tokens and lm_head can be saved whole here",
                      info.name, k.module);
        need_2d();
        (k.part == P::ModuleToSave ? a.replaced : a.embedding_layers)[k.module] = t;
        break;
    }
  }

  // Every LoRA complete, with the rank the config gives it (PEFT builds the layers from the config).
  auto check_pair = [&](const std::string& module, const LoraFactors& f) {
    const std::string name_a = adapter_tensor_name(a, module, "lora_A"), name_b = adapter_tensor_name(a, module, "lora_B");
    if (f.a.empty()) fail_format(weights_path, "tensor '{}' is missing ('{}' is there)", name_a, name_b);
    if (f.b.empty()) fail_format(weights_path, "tensor '{}' is missing ('{}' is there)", name_b, name_a);
    const int64_t r = c.rank_for(module);
    if (f.a.dim(0) != r)
      fail_format(weights_path, "tensor '{}' has shape {}: rank {}, but adapter_config.json gives {} rank {}", name_a,
                  f.a.shape_str(), f.a.dim(0), module, r);
    if (f.b.dim(1) != r)
      fail_format(weights_path, "tensor '{}' has shape {}: rank {}, but adapter_config.json gives {} rank {}", name_b,
                  f.b.shape_str(), f.b.dim(1), module, r);
  };
  for (const auto& [module, f] : a.linears) {
    check_pair(module, f);
    if (c.use_dora && f.magnitude.empty())
      fail_format(weights_path, "tensor '{}' is missing (use_dora = true)", adapter_tensor_name(a, module, "lora_magnitude_vector"));
    if (c.adalora && (f.e.ndim() != 2 || f.e.dim(0) != f.a.dim(0) || f.e.dim(1) != 1))
      fail_format(weights_path, "tensor '{}' {}, expected [{}, 1] (one singular value per row of lora_A)",
                  adapter_tensor_name(a, module, "lora_E"), f.e.empty() ? "is missing" : "has shape " + f.e.shape_str(),
                  f.a.dim(0));
    if (!f.magnitude.empty() && f.magnitude.dim(0) != f.b.dim(0))
      fail_format(weights_path, "tensor '{}' has {} values, but '{}' has {} rows", adapter_tensor_name(a, module, "lora_magnitude_vector"),
                  f.magnitude.dim(0), adapter_tensor_name(a, module, "lora_B"), f.b.dim(0));
  }
  if (a.embedding) check_pair("model.embed_tokens", *a.embedding);
  for (const auto& [module, t] : a.replaced) {
    const std::string short_name = module == "lm_head" ? "lm_head" : "embed_tokens";
    bool listed = false;
    for (const std::string& m : c.modules_to_save) listed = listed || m == short_name || m == module;
    if (!listed)
      fail_format(weights_path, "tensor '{}' is a whole module, but adapter_config.json does not list {} in modules_to_save",
                  adapter_tensor_name(a, module, "weight"), short_name);
  }
  return a;
}

void write_peft_adapter(const Adapter& split, const std::string& dir_arg, const PeftWriteOptions& options) {
  const Adapter a = join_fused_modules(split);  // (Phi-3: PEFT's modules are qkv_proj and gate_up_proj)
  if (options.adapter_name.empty() || options.adapter_name.find('/') != std::string::npos || options.adapter_name == "..")
    fail("adapter name '{}' cannot be a folder name", options.adapter_name);
  const std::string dir = options.adapter_name == "default" ? dir_arg : dir_arg + "/" + options.adapter_name;
  Adapter named = a;
  named.format = "peft";  // the keys below, not the source's naming
  const DType dtype = a.stored_dtype;
  auto stored = [&](const Tensor& t) { return t.dtype() == dtype ? t : t.to(dtype); };

  std::map<std::string, Tensor> tensors;
  for (const auto& [module, f] : a.linears) {
    tensors[adapter_tensor_name(named, module, "lora_A")] = stored(f.a);
    tensors[adapter_tensor_name(named, module, "lora_B")] = stored(f.b);
    if (!f.e.empty()) tensors[adapter_tensor_name(named, module, "lora_E")] = stored(f.e);
    if (!f.magnitude.empty()) tensors[adapter_tensor_name(named, module, "lora_magnitude_vector")] = stored(f.magnitude);
  }
  if (a.embedding) {
    tensors[adapter_tensor_name(named, "model.embed_tokens", "lora_A")] = stored(a.embedding->a);
    tensors[adapter_tensor_name(named, "model.embed_tokens", "lora_B")] = stored(a.embedding->b);
  }
  for (const auto& [module, t] : a.biases) tensors[adapter_tensor_name(named, module, "bias")] = stored(t);
  for (const auto& [module, t] : a.replaced) tensors[adapter_tensor_name(named, module, "weight")] = stored(t);
  if (options.save_embedding_layers)
    for (const auto& [module, t] : a.embedding_layers) tensors[adapter_tensor_name(named, module, "base_layer.weight")] = stored(t);

  json config;
  if (!a.original_config.empty()) {
    config = json::parse(a.original_config, nullptr, false);
    if (config.is_discarded()) fail("{}: the adapter's original adapter_config.json is not valid JSON", a.source);
    config["inference_mode"] = true;
  } else {
    config = a.config.to_peft_json();
  }

  AtomicDirectory out(dir);
  write_file_atomic(out / "adapter_config.json", config.dump(2) + "\n");
  save_safetensors(out / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  out.commit();
}

void save_peft_adapter(const TrainableModel& model, const std::string& dir) {
  write_peft_adapter(adapter_from_trainable(model), dir);
}

TrainableModel load_peft_adapter(const Model& base, const std::string& dir) {
  Adapter a = read_peft_adapter(dir);
  check_adapter_fits(a, base);
  return trainable_from_adapter(base, a);
}

}  // namespace lora
