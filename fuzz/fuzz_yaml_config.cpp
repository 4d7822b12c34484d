// `lora train -c FILE`: YAML text applied to the train command's options (keys, aliases, lists, values
// each option must accept or reject with the file, line and key named).
#include <CLI/CLI.hpp>

#include "cli/config_file.h"
#include "cli/train_options.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  CLI::App app("lora");
  CLI::App* cmd = app.add_subcommand("train");
  lora::cli::TrainOptions options;
  lora::cli::add_train_options(cmd, options);
  lora::fuzz::expect_clean([&] {
    lora::cli::apply_yaml_text(cmd, std::string(reinterpret_cast<const char*>(data), size), "config.yaml");
  });
  return 0;
}
