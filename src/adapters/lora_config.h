#pragma once
// LoRA configuration, field for field PEFT's LoraConfig, serialized 1:1 to adapter_config.json.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace lora {

// AdaLoRA (PEFT's AdaLoraConfig): every adapted matrix gets an SVD-shaped update B·diag(E)·A of rank
// init_r, and the total rank is cut down to target_r per matrix during training by importance scores.
struct AdaLoraOptions {
  int64_t init_r = 12, target_r = 8;
  int64_t tinit = 0, tfinal = 0, delta_t = 1;  // deltaT in adapter_config.json
  double beta1 = 0.85, beta2 = 0.85;
  double orth_reg_weight = 0.5;
  int64_t total_step = 0;  // 0: not known yet (the trainer sets it from the run)
  // The kept triplets of every adapted matrix, keyed "<module path>.lora_E" (init_r flags each), as
  // PEFT saves them once the budget is final; empty while every triplet is kept.
  std::map<std::string, std::vector<bool>> rank_pattern;

  // The pruning phase must exist: tinit < total_step − tfinal (checked once total_step is known).
  void validate_schedule() const;
};

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
  std::optional<AdaLoraOptions> adalora;  // set: peft_type "ADALORA"

  // Checks values (r > 0, dropout in [0, 1), known init and bias modes); throws lora::Error.
  void validate() const;

  // Whether the module at `path` (e.g. "model.layers.3.self_attn.q_proj", "lm_head") gets a LoRA.
  bool targets(const std::string& path) const;
  // LoRA: rank_pattern's entry or r. AdaLoRA: the kept triplets of rank_pattern, or init_r.
  int64_t rank_for(const std::string& path) const;
  float alpha_for(const std::string& path) const;
  // alpha / r, or alpha / sqrt(r) with rsLoRA. AdaLoRA: alpha / (init_r + 1e-5) whatever the kept rank,
  // exactly PEFT's scaling / (ranknum + 1e-5) with ranknum fixed at init_r.
  float scaling_for(const std::string& path) const;

  nlohmann::json to_peft_json() const;
  static LoraConfig from_peft_json(const nlohmann::json& j, const std::string& path);
};

// The linear modules of a Llama-family layer, as Hugging Face names them.
const std::vector<std::string>& llama_linear_module_names();
// "model.layers.3.self_attn.q_proj" -> 3; paths outside the layers -> nullopt.
std::optional<int64_t> layer_index_of(const std::string& path);

}  // namespace lora
