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
void register_train(CLI::App& app);
void register_eval(CLI::App& app);
void register_chat(CLI::App& app);
void register_init(CLI::App& app);
void register_quantize(CLI::App& app);

// Thrown by a command to end the program with this exit status after its message (e.g. 130 when
// training was interrupted and checkpointed).
struct ExitStatus {
  int code;
};
void register_merge(CLI::App& app);
void register_adapter(CLI::App& app);
void register_serve(CLI::App& app);
void register_classify(CLI::App& app);

}  // namespace lora::cli
