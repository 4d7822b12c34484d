#include "cli/load_adapters.h"

#include <cmath>
#include <filesystem>

#include "adapters/merge.h"
#include "adapters/peft_io.h"
#include "core/error.h"

namespace lora::cli {

AdapterSpec parse_adapter_spec(const std::string& spec) {
  AdapterSpec a{spec, 1.0f};
  const size_t colon = spec.rfind(':');
  std::error_code ec;
  if (colon == std::string::npos || colon == 0 || std::filesystem::is_directory(spec, ec)) return a;
  const std::string tail = spec.substr(colon + 1);
  size_t used = 0;
  float scale = 0;
  try {
    scale = std::stof(tail, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != tail.size() || tail.empty() || !std::isfinite(scale))
    fail("--adapter {}: the scale after ':' must be a number (DIR or DIR:SCALE)", spec);
  a.dir = spec.substr(0, colon);
  a.scale = scale;
  return a;
}

void add_adapter_option(CLI::App* cmd, std::vector<std::string>& specs) {
  cmd->add_option("--adapter", specs,
                  "PEFT adapter folder (adapter_config.json + adapter_model.safetensors), optionally with a scale: "
                  "DIR[:SCALE]; repeatable, applied in order (default: none)");
}

Model apply_adapters(const Model& base, const std::vector<std::string>& specs) {
  Model current = base;  // views: no weight is copied
  for (const std::string& s : specs) {
    const AdapterSpec spec = parse_adapter_spec(s);
    Model next;
    {
      TrainableModel adapter = load_peft_adapter(current, spec.dir);
      // s·B·A scaled: every lora_B (PEFT's set_scale); trained biases and saved modules stay as they are
      if (spec.scale != 1.0f)
        for (Param& p : adapter.params())
          if (p.name.ends_with("lora_B.weight") || p.name.ends_with("lora_embedding_B"))
            for (int64_t i = 0; i < p.value->numel(); ++i) p.value->f32()[i] *= spec.scale;
      next = merged_model(adapter);
    }
    current = std::move(next);
  }
  return current;
}

}  // namespace lora::cli
