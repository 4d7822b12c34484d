#pragma once
// The data options `lora train` and `lora eval` share, and what they turn into.
#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "data/dataset.h"

namespace lora::cli {

struct DataOptions {
  std::vector<std::string> data, val_data;
  double val_size = 0;
  std::string format = "auto";
  std::string template_name = "auto";
  int64_t max_seq_len = 1024;
  bool train_on_prompt = false;
  bool packing = false;
  int64_t max_samples = 0;

  // -d/--data, --format, --template, --max-seq-len, --train-on-prompt, --max-samples; with
  // `training`, also --val-data, --val-size and --packing.
  void add_to(CLI::App* cmd, bool training);
  // Checks names (format, template) before anything is loaded.
  void validate() const;
  DatasetOptions dataset_options(int64_t max_seq_len_limit, uint64_t seed) const;
};

}  // namespace lora::cli
