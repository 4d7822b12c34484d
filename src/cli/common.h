#pragma once
// Options every model-taking command shares (-m, --tokenizer, --threads, --dtype, --quantize) and the
// loading that goes with them.
#include <string>

#include <CLI/CLI.hpp>

#include "model/model.h"

namespace lora::cli {

struct ModelOptions {
  std::string model;
  std::string revision;  // with -m ORG/NAME from the Hugging Face cache
  std::string tokenizer;
  std::string dtype;  // "", "f32", "bf16": convert weights on load
  std::string quantize;  // "", "nf4", "fp4", "int8": quantize the linear layers on load
  int threads = 0;

  // Adds -m/--model (required unless told otherwise), --tokenizer, --dtype, --threads/-t, and --quantize
  // unless the command has its own way to say it.
  void add_to(CLI::App* cmd, bool model_required = true, bool quantize_option = true);
  // Sets the thread count and loads the model; a model without a tokenizer is an error when
  // require_tokenizer is set.
  Model load(bool require_tokenizer = true) const;
};

// Throughput as "123.4 tok/s" given a token count and seconds.
std::string rate(int64_t tokens, double seconds);

}  // namespace lora::cli
