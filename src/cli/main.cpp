#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"lora.cpp: LoRA / QLoRA / AdaLoRA fine-tuning and inference for Llama-family models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lora.cpp 0.1.0");
  lora::cli::register_info(app);
  lora::cli::register_generate(app);
  lora::cli::register_perplexity(app);
  lora::cli::register_convert(app);
  lora::cli::register_tokenize(app);
  lora::cli::register_init(app);
  lora::cli::register_train(app);
  lora::cli::register_eval(app);
  lora::cli::register_chat(app);
  lora::cli::register_quantize(app);
  lora::cli::register_merge(app);
  lora::cli::register_adapter(app);
  lora::cli::register_serve(app);
  lora::cli::register_classify(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const lora::cli::ExitStatus& e) {
    return e.code;
  } catch (const lora::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
