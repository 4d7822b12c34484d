#include "cli/template_choice.h"

#include <filesystem>

#include <yaml-cpp/yaml.h>

#include "cli/adapter_options.h"
#include "data/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace lora::cli {

std::string training_arg(const std::string& dir, const std::string& key) {
  const std::string path = dir + "/training_args.yaml";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return "";
  try {
    const YAML::Node root = YAML::LoadFile(path);
    if (root.IsMap() && root[key] && root[key].IsScalar()) return root[key].as<std::string>();
  } catch (const YAML::Exception&) {
  }
  return "";
}

TemplateChoice choose_template(const std::string& requested, const Tokenizer& tok, const std::vector<std::string>& adapter_specs) {
  if (!requested.empty() && requested != "auto") {
    chat_template(requested);  // validates the name
    return {requested, "--template"};
  }
  if (!adapter_specs.empty()) {
    const std::string dir = parse_adapter_spec(adapter_specs.front()).path;
    const std::string name = training_arg(dir, "template");
    if (!name.empty() && name != "auto") {
      chat_template(name);
      return {name, "the one " + dir + " was trained with"};
    }
  }
  if (!tok.chat_template().empty()) {
    if (const auto name = detect_chat_template(tok.chat_template())) return {*name, "recognised in the model's chat_template"};
    return {"alpaca", "the model's chat_template is not one of the known ones; pass --template to choose"};
  }
  return {"alpaca", "the model records no chat template; pass --template to choose"};
}

}  // namespace lora::cli
