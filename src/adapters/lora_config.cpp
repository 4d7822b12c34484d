#include "adapters/lora_config.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace lora {

const std::vector<std::string>& llama_linear_module_names() {
  static const std::vector<std::string> names = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return names;
}

std::optional<int64_t> layer_index_of(const std::string& path) {
  static const std::regex layer_re(R"((^|\.)layers\.(\d+)\.)");
  std::smatch m;
  if (std::regex_search(path, m, layer_re)) return std::stoll(m[2]);
  return std::nullopt;
}

namespace {

// PEFT's rule for a list of names: the key equals the path or is its last dotted components.
bool path_ends_with_module(const std::string& path, const std::string& key) {
  if (path == key) return true;
  return path.size() > key.size() && path.compare(path.size() - key.size(), key.size(), key) == 0 &&
         path[path.size() - key.size() - 1] == '.';
}

bool is_lm_head(const std::string& path) { return path == "lm_head"; }
bool is_embedding(const std::string& path) { return path_ends_with_module(path, "embed_tokens"); }

}  // namespace

void AdaLoraOptions::validate_schedule() const {
  if (total_step <= 0) fail("AdaLoRA needs total_step > 0 (the number of optimizer steps), got {}", total_step);
  if (tinit >= total_step - tfinal)
    fail("AdaLoRA: tinit ({}) must be below total_step - tfinal ({} - {}), or there is no budgeting phase", tinit,
         total_step, tfinal);
}

void LoraConfig::validate() const {
  if (r <= 0) fail("LoRA rank r must be positive, got {}", r);
  if (adalora) {
    const AdaLoraOptions& a = *adalora;
    if (a.init_r <= 0 || a.target_r <= 0) fail("AdaLoRA: init_r and target_r must be positive, got {} and {}", a.init_r, a.target_r);
    if (a.target_r > a.init_r) fail("AdaLoRA: target_r ({}) cannot exceed init_r ({})", a.target_r, a.init_r);
    if (a.tinit < 0 || a.tfinal < 0 || a.delta_t < 1)
      fail("AdaLoRA: tinit and tfinal must be >= 0 and deltaT >= 1, got {}, {}, {}", a.tinit, a.tfinal, a.delta_t);
    if (!(a.beta1 > 0 && a.beta1 < 1 && a.beta2 > 0 && a.beta2 < 1))
      fail("AdaLoRA: beta1 and beta2 must be in (0, 1), got {} and {}", a.beta1, a.beta2);
    if (!(a.orth_reg_weight > 0)) fail("AdaLoRA: orth_reg_weight must be positive, got {}", a.orth_reg_weight);
    if (a.total_step > 0) a.validate_schedule();
    for (const auto& [k, v] : a.rank_pattern)
      if (int64_t(v.size()) != a.init_r)
        fail("AdaLoRA rank_pattern['{}'] has {} entries, expected init_r = {}", k, v.size(), a.init_r);
    if (use_dora) fail("AdaLoRA does not support DoRA");
    if (use_rslora) fail("AdaLoRA does not support rsLoRA (its scaling is alpha / init_r)");
    if (init_lora_weights == "pissa") fail("AdaLoRA has its own initialization; init_lora_weights 'pissa' does not apply");
    if (!rank_pattern.empty() || !alpha_pattern.empty()) fail("AdaLoRA allocates ranks itself: rank_pattern/alpha_pattern of LoRA do not apply");
    for (const std::string& t : target_modules)
      if (is_embedding(t)) fail("AdaLoRA adapts linear layers only, not embed_tokens");
  }
  if (!(lora_dropout >= 0.0f && lora_dropout < 1.0f)) fail("lora_dropout must be in [0, 1), got {}", lora_dropout);
  if (init_lora_weights != "true" && init_lora_weights != "gaussian" && init_lora_weights != "pissa" &&
      init_lora_weights != "false")
    fail("unknown init_lora_weights '{}' (expected true, gaussian, pissa or false)", init_lora_weights);
  if (bias != "none" && bias != "all" && bias != "lora_only")
    fail("unknown bias mode '{}' (expected none, all or lora_only)", bias);
  for (const auto& [k, v] : rank_pattern)
    if (v <= 0) fail("rank_pattern['{}'] must be positive, got {}", k, v);
  if (!target_modules_regex.empty()) {
    try {
      std::regex re(target_modules_regex);
    } catch (const std::regex_error& e) {
      fail("target_modules regex '{}' is invalid: {}", target_modules_regex, e.what());
    }
  } else {
    static const std::vector<std::string> known = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                   "down_proj", "qkv_proj", "gate_up_proj", "embed_tokens", "lm_head",
                                                   "all-linear"};
    for (const std::string& t : target_modules) {
      const std::string last = t.substr(t.rfind('.') == std::string::npos ? 0 : t.rfind('.') + 1);
      if (std::find(known.begin(), known.end(), last) == known.end())
        fail("unknown target module '{}' (valid: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, "
             "qkv_proj and gate_up_proj (Phi-3), embed_tokens, lm_head, all-linear)", t);
    }
  }
}

bool LoraConfig::targets(const std::string& path) const {
  for (const std::string& ex : exclude_modules)
    if (path_ends_with_module(path, ex)) return false;
  if (!layers_to_transform.empty()) {
    const auto layer = layer_index_of(path);
    if (!layer || std::find(layers_to_transform.begin(), layers_to_transform.end(), *layer) == layers_to_transform.end())
      return false;
  }
  if (!target_modules_regex.empty()) return std::regex_match(path, std::regex(target_modules_regex));
  for (const std::string& t : target_modules) {
    // all-linear: every linear layer except the output head (PEFT's rule), never the embedding.
    if (t == "all-linear" && !is_lm_head(path) && !is_embedding(path)) return true;
    if (path_ends_with_module(path, t)) return true;
  }
  return false;
}

int64_t LoraConfig::rank_for(const std::string& path) const {
  if (adalora) {
    const auto it = adalora->rank_pattern.find(path + ".lora_E");
    if (it == adalora->rank_pattern.end()) return adalora->init_r;
    return int64_t(std::count(it->second.begin(), it->second.end(), true));
  }
  for (const auto& [key, value] : rank_pattern)
    if (path_ends_with_module(path, key) || std::regex_match(path, std::regex("(.*\\.)?" + key))) return value;
  return r;
}

float LoraConfig::alpha_for(const std::string& path) const {
  for (const auto& [key, value] : alpha_pattern)
    if (path_ends_with_module(path, key) || std::regex_match(path, std::regex("(.*\\.)?" + key))) return value;
  return lora_alpha;
}

float LoraConfig::scaling_for(const std::string& path) const {
  if (adalora) return float((lora_alpha > 0 ? lora_alpha : double(adalora->init_r)) / (double(adalora->init_r) + 1e-5));
  const double rank = double(rank_for(path));
  return float(alpha_for(path) / (use_rslora ? std::sqrt(rank) : rank));
}

nlohmann::json LoraConfig::to_peft_json() const {
  // The keys PEFT's LoraConfig serializes (0.10 - 0.13), sorted as its json.dump(sort_keys=True) writes
  // them. Keys newer versions added are written only when set, so older PEFT releases still load the file.
  using nlohmann::json;
  json j;
  j["alpha_pattern"] = alpha_pattern;
  j["auto_mapping"] = nullptr;
  j["base_model_name_or_path"] = base_model_name_or_path.empty() ? json(nullptr) : json(base_model_name_or_path);
  j["bias"] = bias;
  if (!exclude_modules.empty()) j["exclude_modules"] = exclude_modules;
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  if (init_lora_weights == "true" || init_lora_weights == "false")
    j["init_lora_weights"] = init_lora_weights == "true";
  else
    j["init_lora_weights"] = init_lora_weights;
  j["layer_replication"] = nullptr;
  j["layers_pattern"] = nullptr;
  j["layers_to_transform"] = layers_to_transform.empty() ? json(nullptr) : json(layers_to_transform);
  j["loftq_config"] = json::object();
  // PEFT writes what the user gave, usually an integer.
  if (lora_alpha == std::floor(lora_alpha) && std::fabs(lora_alpha) < 1e9f)
    j["lora_alpha"] = int64_t(lora_alpha);
  else
    j["lora_alpha"] = lora_alpha;
  j["lora_dropout"] = lora_dropout;
  j["megatron_config"] = nullptr;
  j["megatron_core"] = "megatron.core";
  j["modules_to_save"] = modules_to_save.empty() ? json(nullptr) : json(modules_to_save);
  j["peft_type"] = "LORA";
  j["r"] = r;
  j["rank_pattern"] = rank_pattern;
  j["revision"] = nullptr;
  if (!target_modules_regex.empty())
    j["target_modules"] = target_modules_regex;
  else
    j["target_modules"] = target_modules;
  j["task_type"] = task_type;
  j["use_dora"] = use_dora;
  j["use_rslora"] = use_rslora;
  if (adalora) {
    const AdaLoraOptions& a = *adalora;
    j["peft_type"] = "ADALORA";
    j["init_r"] = a.init_r;
    j["target_r"] = a.target_r;
    j["tinit"] = a.tinit;
    j["tfinal"] = a.tfinal;
    j["deltaT"] = a.delta_t;
    j["beta1"] = a.beta1;
    j["beta2"] = a.beta2;
    j["orth_reg_weight"] = a.orth_reg_weight;
    j["total_step"] = a.total_step > 0 ? nlohmann::json(a.total_step) : nlohmann::json(nullptr);
    j["rank_pattern"] = a.rank_pattern.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.rank_pattern);
    j["alpha_pattern"] = nlohmann::json::object();
  }
  return j;
}

LoraConfig LoraConfig::from_peft_json(const nlohmann::json& j, const std::string& path) {
  LoraConfig c;
  try {
    const std::string peft_type = j.value("peft_type", std::string("LORA"));
    if (peft_type != "LORA" && peft_type != "ADALORA")
      fail_format(path, "peft_type is '{}', expected LORA or ADALORA", peft_type);
    if (peft_type == "ADALORA") {
      AdaLoraOptions a;
      auto number = [&](const char* key, auto& out) {
        if (j.contains(key) && !j[key].is_null()) out = j[key].get<std::decay_t<decltype(out)>>();
      };
      number("init_r", a.init_r);
      number("target_r", a.target_r);
      number("tinit", a.tinit);
      number("tfinal", a.tfinal);
      number("deltaT", a.delta_t);
      number("beta1", a.beta1);
      number("beta2", a.beta2);
      number("orth_reg_weight", a.orth_reg_weight);
      number("total_step", a.total_step);
      if (j.contains("rank_pattern") && j["rank_pattern"].is_object())
        a.rank_pattern = j["rank_pattern"].get<std::map<std::string, std::vector<bool>>>();
      c.adalora = a;
    }
    c.r = j.at("r").get<int64_t>();
    c.lora_alpha = j.value("lora_alpha", float(c.r));
    c.lora_dropout = j.value("lora_dropout", 0.0f);
    const auto& t = j.at("target_modules");
    if (t.is_string()) {
      c.target_modules.clear();
      c.target_modules_regex = t.get<std::string>();
    } else {
      c.target_modules = t.get<std::vector<std::string>>();
    }
    auto list = [&](const char* key, auto& out) {
      if (j.contains(key) && !j[key].is_null()) {
        if (j[key].is_array())
          out = j[key].get<std::decay_t<decltype(out)>>();
        else
          out = {j[key].get<typename std::decay_t<decltype(out)>::value_type>()};
      }
    };
    list("exclude_modules", c.exclude_modules);
    list("layers_to_transform", c.layers_to_transform);
    list("modules_to_save", c.modules_to_save);
    if (!c.adalora && j.contains("rank_pattern") && j["rank_pattern"].is_object()) c.rank_pattern = j["rank_pattern"].get<std::map<std::string, int64_t>>();
    if (j.contains("alpha_pattern") && j["alpha_pattern"].is_object()) c.alpha_pattern = j["alpha_pattern"].get<std::map<std::string, float>>();
    c.use_rslora = j.value("use_rslora", false);
    c.use_dora = j.value("use_dora", false);
    if (j.contains("init_lora_weights")) {
      const auto& init = j["init_lora_weights"];
      c.init_lora_weights = init.is_boolean() ? (init.get<bool>() ? "true" : "false") : init.get<std::string>();
    }
    if (j.contains("bias") && j["bias"].is_string()) c.bias = j["bias"].get<std::string>();
    // PEFT writes null for unset strings.
    if (j.contains("base_model_name_or_path") && j["base_model_name_or_path"].is_string())
      c.base_model_name_or_path = j["base_model_name_or_path"].get<std::string>();
    if (j.contains("task_type") && j["task_type"].is_string()) c.task_type = j["task_type"].get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    fail_format(path, "invalid adapter_config.json: {}", e.what());
  }
  c.validate();
  return c;
}

}  // namespace lora
