#include "cli/config_file.h"

#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "core/error.h"

namespace lora::cli {

namespace {

// Keys other tools' configs use for the same options.
const std::map<std::string, std::string>& aliases() {
  static const std::map<std::string, std::string> a = {
      // Hugging Face TrainingArguments / LLaMA-Factory
      {"model_name_or_path", "model"},
      {"output_dir", "output"},
      {"learning_rate", "lr"},
      {"num_train_epochs", "epochs"},
      {"per_device_train_batch_size", "batch-size"},
      {"gradient_accumulation_steps", "grad-accum"},
      {"lr_scheduler_type", "lr-scheduler"},
      {"warmup_steps", "warmup"},
      {"warmup_ratio", "warmup"},
      {"resume_from_checkpoint", "resume"},
      {"lora_rank", "rank"},
      {"lora_alpha", "alpha"},
      {"lora_dropout", "dropout"},
      {"lora_target", "target"},
      {"target_modules", "target"},
      {"additional_target", "modules-to-save"},
      {"use_rslora", "rslora"},
      {"use_dora", "dora"},
      {"cutoff_len", "max-seq-len"},
      {"freeze_trainable_layers", "freeze-layers"},
      // mlx-lm
      {"iters", "max-steps"},
      {"adapter_path", "output"},
      {"max_seq_length", "max-seq-len"},
      {"fine_tune_type", "finetuning-type"},
      {"save_every", "save-steps"},
      {"steps_per_report", "logging-steps"},
      {"steps_per_eval", "eval-steps"},
      {"grad_checkpoint", "gradient-checkpointing"},
  };
  return a;
}

std::string option_key(std::string key) {
  for (char& c : key)
    if (c == '_') c = '-';
  return key;
}

}  // namespace

void apply_yaml_text(CLI::App* cmd, const std::string& text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail("{}:{}: not valid YAML: {}", origin, e.mark.line + 1, e.msg);
  }
  if (root.IsNull()) return;
  if (!root.IsMap()) fail("{}: a config file must be a mapping of option names to values", origin);
  for (const auto& kv : root) {
    const int line = kv.first.Mark().line + 1;
    const std::string key = kv.first.as<std::string>();
    const auto alias = aliases().find(key);
    const std::string name = alias != aliases().end() ? alias->second : option_key(key);
    CLI::Option* opt = name == "help" || name == "config" ? nullptr : cmd->get_option_no_throw("--" + name);
    if (!opt) fail("{}:{}: unknown key '{}' (the keys are the long options of lora {} --help)", origin, line, key, cmd->get_name());
    if (opt->count() > 0) continue;  // the command line wins
    std::vector<std::string> values;
    const YAML::Node& v = kv.second;
    if (v.IsSequence()) {
      for (const auto& item : v) {
        if (!item.IsScalar()) fail("{}:{}: '{}' must be a value or a list of values", origin, line, key);
        values.push_back(item.as<std::string>());
      }
    } else if (v.IsScalar()) {
      values.push_back(v.as<std::string>());
    } else if (v.IsNull()) {
      continue;
    } else {
      fail("{}:{}: '{}' must be a value or a list of values, not a mapping", origin, line, key);
    }
    try {
      opt->add_result(values);
      opt->run_callback();
    } catch (const CLI::Error& e) {
      fail("{}:{}: '{}': {}", origin, line, key, e.what());
    }
  }
}

void apply_yaml_config(CLI::App* cmd, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the config file", path);
  std::stringstream ss;
  ss << in.rdbuf();
  apply_yaml_text(cmd, ss.str(), path);
}

std::string options_to_yaml(const CLI::App* cmd, const std::set<std::string>& skip,
                            const std::map<std::string, std::vector<std::string>>& overrides) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const CLI::Option* opt : cmd->get_options()) {
    if (opt->get_lnames().empty()) continue;
    const std::string name = opt->get_lnames().front();
    std::string key = name;
    for (char& c : key)
      if (c == '-') c = '_';
    if (skip.count(name) || skip.count(key)) continue;
    std::vector<std::string> values = opt->results();
    if (const auto o = overrides.find(key); o != overrides.end()) {
      values = o->second;
    } else if (values.empty()) {
      if (opt->get_default_str().empty()) continue;
      values = {opt->get_default_str()};
      // defaults of list options are shown as "[a,b]"
      if (values[0].size() > 1 && values[0].front() == '[' && values[0].back() == ']') {
        std::vector<std::string> items;
        std::stringstream list(values[0].substr(1, values[0].size() - 2));
        for (std::string item; std::getline(list, item, ',');) items.push_back(item);
        values = items;
      }
    }
    if (values.empty()) continue;
    out << YAML::Key << key << YAML::Value;
    if (opt->get_items_expected_max() > 1) {
      out << YAML::Flow << YAML::BeginSeq;
      for (const std::string& v : values) out << v;
      out << YAML::EndSeq;
    } else {
      out << values.back();
    }
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace lora::cli
