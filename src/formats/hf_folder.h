#pragma once
// Hugging Face model folders: config.json + model.safetensors, or shards listed in
// model.safetensors.index.json ("weight_map"), with HF tensor names (model.layers.N.self_attn.q_proj.weight, ...).
// save_hf_folder (declared in model_loader.h) writes the same layout.
#include <string>

#include "formats/model_loader.h"

namespace lora {

// BF16 and F32 weights stay views into the mapped files, F16 ones become F32; norms and biases are
// F32. Every tensor's shape is checked against config.json. The tokenizer is loaded when the folder
// holds tokenizer.json or tokenizer.model.
Model load_hf_folder(const std::string& dir, const LoadOptions& options = {});

}  // namespace lora
