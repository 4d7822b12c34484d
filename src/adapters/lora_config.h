#pragma once
// LoRA configuration, field for field PEFT's LoraConfig, serialized 1:1 to adapter_config.json.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace lora {

struct LoraConfig {
  int64_t r = 8;
  float lora_alpha = 8.0f;
  float lora_dropout = 0.0f;
  // Either module names matched at the end of the module path ("q_proj", "self_attn.q_proj",
  // "all-linear"), or, when target_modules_regex is set, a regex the whole path must match.
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
  std::string target_modules_regex;
  std::vector<std::string> exclude_modules;
  std::vector<int64_t> layers_to_transform;  // empty: every layer
  std::map<std::string, int64_t> rank_pattern;  // key matched at the end of the module path
  std::map<std::string, float> alpha_pattern;
  bool use_rslora = false;
  bool use_dora = false;
  std::string init_lora_weights = "true";  // "true" (kaiming-uniform A, B = 0), "gaussian", "pissa"
  std::string bias = "none";               // "none", "all", "lora_only"
  std::vector<std::string> modules_to_save;
  std::string base_model_name_or_path;
  std::string task_type = "CAUSAL_LM";

  // Checks values (r > 0, dropout in [0, 1), known init and bias modes); throws lora::Error.
  void validate() const;

  // Whether the module at `path` (e.g. "model.layers.3.self_attn.q_proj", "lm_head") gets a LoRA.
  bool targets(const std::string& path) const;
  int64_t rank_for(const std::string& path) const;
  float alpha_for(const std::string& path) const;
  // alpha / r, or alpha / sqrt(r) with rsLoRA.
  float scaling_for(const std::string& path) const;

  nlohmann::json to_peft_json() const;
  static LoraConfig from_peft_json(const nlohmann::json& j, const std::string& path);
};

// The linear modules of a Llama-family layer, as Hugging Face names them.
const std::vector<std::string>& llama_linear_module_names();
// "model.layers.3.self_attn.q_proj" -> 3; paths outside the layers -> nullopt.
std::optional<int64_t> layer_index_of(const std::string& path);

}  // namespace lora
