#pragma once
// LoRA adapters in Hugging Face PEFT's folder layout (what save_pretrained writes and
// PeftModel.from_pretrained reads): adapter_config.json + adapter_model.safetensors with PEFT's keys,
// metadata {"format": "pt"}.
#include <string>

#include "train/trainable_model.h"

namespace lora {

// Writes the trained adapter (LoRA fine-tuning only) into `dir`, atomically. A PiSSA adapter is written
// as the equivalent plain LoRA of rank 2r on the untouched base (PEFT's conversion), so it loads anywhere.
void save_peft_adapter(const TrainableModel& model, const std::string& dir);

// Builds a TrainableModel for `base` from an adapter folder. Every tensor in the file must match a
// tensor the config creates, with the same shape; the first mismatch is an error naming the tensor.
TrainableModel load_peft_adapter(const Model& base, const std::string& dir);

}  // namespace lora
