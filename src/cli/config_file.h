#pragma once
// YAML config files for the CLI (`lora train -c FILE`): the keys are the command's long option names
// (`max_seq_len` or `max-seq-len`), plus the spellings LLaMA-Factory and mlx-lm configs use
// (`learning_rate`, `num_train_epochs`, `lora_rank`, `cutoff_len`, `iters` ...). Options given on the
// command line win over the file.
#include <map>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace lora::cli {

// Sets every option of `cmd` that was not given on the command line from the YAML mapping in `path`.
// An unknown key, a nested mapping or a value the option rejects is a lora::Error naming the file,
// the line and the key.
void apply_yaml_config(CLI::App* cmd, const std::string& path);

// The same from YAML text (`origin` names it in messages).
void apply_yaml_text(CLI::App* cmd, const std::string& text, const std::string& origin);

// The values of every long option of `cmd` (given or default) as a YAML mapping, keys with
// underscores, minus `skip`; `overrides` replace values (key -> values).
std::string options_to_yaml(const CLI::App* cmd, const std::set<std::string>& skip,
                            const std::map<std::string, std::vector<std::string>>& overrides);

}  // namespace lora::cli
