#pragma once
// Adapters from and to files, whatever the format: a PEFT folder (peft_io.h) or a GGUF adapter file
// (gguf_adapter.h), told apart by content.
#include <string>

#include "adapters/adapter.h"

namespace lora {

// "peft" for a folder with adapter_config.json (or a sub-folder holding one), "gguf" for a GGUF file;
// FormatError otherwise.
std::string detect_adapter_format(const std::string& path);

// Reads either format. `base` (may be null) lets a GGUF adapter's q/k rows be put in Hugging Face order.
Adapter read_adapter(const std::string& path, const ModelConfig* base = nullptr);

// Reads and checks it against `base` (check_adapter_fits): ready to apply or merge.
Adapter load_adapter(const std::string& path, const Model& base);

// Writes a GGUF file when `path` ends in .gguf (needs `base`: architecture, head counts), otherwise a PEFT
// folder. `dtype` applies to GGUF tensors (PEFT folders keep the adapter's stored dtype).
void write_adapter(const Adapter& adapter, const std::string& path, const Model* base, DType dtype = DType::F32);

}  // namespace lora
