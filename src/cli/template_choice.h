#pragma once
// Which chat template a command uses, so that `lora chat` and `lora eval` talk to an adapter the way
// `lora train` trained it.
#include <string>
#include <vector>

namespace lora {
class Tokenizer;
}

namespace lora::cli {

struct TemplateChoice {
  std::string name;    // a name chat_template() knows
  std::string reason;  // for the user: where the choice came from
};

// In order: `requested` unless it is "auto" or empty; the template recorded in the first adapter's
// training_args.yaml (written by lora train); the one recognised in the tokenizer's chat_template;
// alpaca, for models that record none. An unknown name is a lora::Error listing the valid ones.
TemplateChoice choose_template(const std::string& requested, const Tokenizer& tok,
                               const std::vector<std::string>& adapter_specs = {});

// The value of `key` in DIR/training_args.yaml, or "" when there is none.
std::string training_arg(const std::string& dir, const std::string& key);

}  // namespace lora::cli
