#pragma once
// `--adapter DIR[:SCALE]` (repeatable) for the inference commands (chat, eval, generate): the PEFT
// adapters are folded into a copy of the base weights, in order, each delta scaled by SCALE
// (default 1). The base model itself is not modified.
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "model/model.h"

namespace lora::cli {

struct AdapterSpec {
  std::string dir;
  float scale = 1.0f;
};

// "DIR" or "DIR:SCALE"; a bad scale is a lora::Error.
AdapterSpec parse_adapter_spec(const std::string& spec);

// Adds --adapter DIR[:SCALE] (repeatable) to a command.
void add_adapter_option(CLI::App* cmd, std::vector<std::string>& specs);

// The base with every adapter applied (the base unchanged when there is none).
Model apply_adapters(const Model& base, const std::vector<std::string>& specs);

}  // namespace lora::cli
