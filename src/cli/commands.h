#pragma once
// Each `lora <command>` lives in its own cmd_*.cpp and registers itself on the CLI11 app here.
// A command's callback throws lora::Error on bad input; main() prints it as one line and exits 1.
#include <CLI/CLI.hpp>

namespace lora::cli {

void register_info(CLI::App& app);
void register_generate(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_convert(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_merge(CLI::App& app);
void register_adapter(CLI::App& app);

}  // namespace lora::cli
