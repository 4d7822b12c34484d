#include "cli/data_options.h"

#include <fmt/format.h>

#include "data/chat_template.h"

namespace lora::cli {

void DataOptions::add_to(CLI::App* cmd, bool training) {
  const char* g = "Data";
  cmd->add_option("-d,--data", data,
                  "data files (.jsonl, .json, .txt) or folders with train.jsonl (+ valid.jsonl); several are mixed "
                  "(repeat the option or separate with commas)")
      ->delimiter(',')->group(g);
  if (training) {
    cmd->add_option("--val-data", val_data, "validation files: eval loss and perplexity during training (default: none)")
        ->delimiter(',')->group(g);
    cmd->add_option("--val-size", val_size,
                    "hold out this fraction (< 1) or number (>= 1) of the training records for validation")
        ->capture_default_str()->check(CLI::NonNegativeNumber)->group(g);
  }
  cmd->add_option("--format", format, "record format: auto detects it per file from the first record")
      ->capture_default_str()->check(CLI::IsMember(data_format_names()))->group(g);
  std::vector<std::string> templates = {"auto"};
  for (const std::string& n : chat_template_names()) templates.push_back(n);
  cmd->add_option("--template", template_name,
                  fmt::format("chat template ({}); auto: the one the model's tokenizer_config.json records, or the "
                              "adapter's, else alpaca", fmt::join(templates, ", ")))
      ->capture_default_str()->group(g);
  cmd->add_option("--max-seq-len", max_seq_len,
                  "examples are cut to this many tokens (at most the model's context length)")
      ->capture_default_str()->check(CLI::Range(int64_t(2), int64_t(1) << 24))->group(g);
  cmd->add_flag("--train-on-prompt", train_on_prompt,
                "train on the whole sequence, prompts included; otherwise only responses are")->default_str("false")
      ->group(g);
  if (training)
    cmd->add_flag("--packing", packing,
                  "pack short examples together into sequences of up to --max-seq-len tokens")->default_str("false")
        ->group(g);
  cmd->add_option("--max-samples", max_samples, "use at most this many records of each file (0: all)")
      ->capture_default_str()->check(CLI::NonNegativeNumber)->group(g);
}

void DataOptions::validate() const {
  if (template_name != "auto") chat_template(template_name);
  data_format_from_name(format);
}

DatasetOptions DataOptions::dataset_options(int64_t max_seq_len_limit, uint64_t seed) const {
  DatasetOptions o;
  o.data = data;
  o.val_data = val_data;
  o.val_size = val_size;
  o.format = data_format_from_name(format);
  o.max_seq_len = std::min(max_seq_len, max_seq_len_limit);
  o.train_on_prompt = train_on_prompt;
  o.packing = packing;
  o.max_samples = max_samples;
  o.seed = seed;
  return o;
}

}  // namespace lora::cli
