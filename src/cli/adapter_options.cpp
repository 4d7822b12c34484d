#include "cli/adapter_options.h"

#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace lora::cli {

AdapterSpec parse_adapter_spec(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon != std::string::npos && colon + 1 < text.size()) {
    const std::string tail = text.substr(colon + 1);
    char* end = nullptr;
    const float scale = std::strtof(tail.c_str(), &end);
    if (end && *end == '\0') {
      if (!std::isfinite(scale)) fail("--adapter {}: the scale must be a finite number", text);
      if (colon == 0) fail("--adapter {}: no adapter path before the scale", text);
      return {text.substr(0, colon), scale};
    }
  }
  if (text.empty()) fail("--adapter needs a path");
  return {text, 1.0f};
}

void AdapterOptions::add_to(CLI::App* cmd) {
  cmd->add_option("--adapter", specs,
                  "LoRA adapter to apply, PATH[:SCALE]: a PEFT folder or a GGUF adapter file (repeatable: outputs "
                  "are summed)");
}

std::vector<AdapterSpec> AdapterOptions::parsed() const {
  std::vector<AdapterSpec> out;
  for (const std::string& s : specs) out.push_back(parse_adapter_spec(s));
  return out;
}

std::unique_ptr<AdapterSet> AdapterOptions::load(const Model& model) const {
  if (specs.empty()) return nullptr;
  auto set = std::make_unique<AdapterSet>(model);
  std::vector<AdapterSet::Selection> selection;
  for (const AdapterSpec& s : parsed()) selection.push_back({set->load(s.path), s.scale});
  set->activate(selection);
  return set;
}

}  // namespace lora::cli
