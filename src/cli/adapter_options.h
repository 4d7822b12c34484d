#pragma once
// --adapter PATH[:SCALE], repeatable, for every command that runs a model: PEFT adapter folders or GGUF
// adapter files applied on the fly to the loaded model, their outputs summed (adapters/adapter_set.h).
// A command adopts it in three lines:
//
//   AdapterOptions adapters;  adapters.add_to(cmd);                 // when registering
//   std::unique_ptr<AdapterSet> set = adapters.load(model);          // after loading the model
//   transformer.set_adapters(set.get());                             // null when no --adapter was given
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "adapters/adapter_set.h"

namespace lora::cli {

struct AdapterSpec {
  std::string path;
  float scale = 1.0f;
};
// "out/zuzu" -> {out/zuzu, 1}; "cats.gguf:0.5" -> {cats.gguf, 0.5}. The scale is what follows the last
// ':' when it is a number; otherwise the whole text is the path.
AdapterSpec parse_adapter_spec(const std::string& text);

struct AdapterOptions {
  std::vector<std::string> specs;

  void add_to(CLI::App* cmd);
  bool empty() const { return specs.empty(); }
  std::vector<AdapterSpec> parsed() const;
  // Every --adapter loaded onto `model` (checked against it) and activated with its scale; null when
  // none was given. The set refers to `model`, which must outlive it.
  std::unique_ptr<AdapterSet> load(const Model& model) const;
};

}  // namespace lora::cli
