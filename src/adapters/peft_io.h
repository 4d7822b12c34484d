#pragma once
// LoRA adapters in Hugging Face PEFT's folder layout (what save_pretrained writes and
// PeftModel.from_pretrained reads): adapter_config.json + adapter_model.safetensors, metadata
// {"format": "pt"}, keys for a Llama causal LM (SPEC.md 3.2):
//
//   base_model.model.<module>.lora_A.weight [r, in]     .lora_B.weight [out, r]
//   base_model.model.<module>.lora_magnitude_vector [out]                      (DoRA)
//   base_model.model.model.embed_tokens.lora_embedding_A [r, vocab]  .lora_embedding_B [hidden, r]
//   base_model.model.<module>.base_layer.bias [out]      (trained bias of an adapted module;
//   base_model.model.<module>.bias [out]                  .bias when the module has no LoRA)
//   base_model.model.lm_head.weight, ...model.embed_tokens.weight           (modules_to_save)
//   base_model.model.<embed_tokens|lm_head>.base_layer.weight   (PEFT's copy of a LoRA-adapted
//                                                                embedding layer, save_embedding_layers)
#include <string>

#include "adapters/adapter.h"
#include "train/trainable_model.h"

namespace lora {

// Reads a PEFT adapter folder. When `dir` has no adapter_config.json but exactly one sub-folder does
// (PEFT saves an adapter not named "default" in a sub-folder named after it), that one is read and
// gives the adapter its name. The file is checked on its own (every tensor is one PEFT writes, A/B
// pairs are complete, ranks agree with the config, tensors only for targeted modules); FormatError
// names the file and the tensor. check_adapter_fits() then checks it against a base model.
Adapter read_peft_adapter(const std::string& dir);

struct PeftWriteOptions {
  std::string adapter_name = "default";  // another name is written into dir/<name>/, as PEFT does
  bool save_embedding_layers = true;     // write the embedding_layers copies (PEFT's default, "auto")
};

// Writes adapter_config.json and adapter_model.safetensors atomically. An adapter read from a PEFT
// folder gets its adapter_config.json back unchanged but for inference_mode = true.
void write_peft_adapter(const Adapter& adapter, const std::string& dir, const PeftWriteOptions& options = {});

// The trained adapter of a LoRA TrainableModel, written as above. A PiSSA adapter is written as the
// equivalent plain LoRA of rank 2r on the untouched base (PEFT's conversion), so it loads anywhere.
void save_peft_adapter(const TrainableModel& model, const std::string& dir);

// A TrainableModel for `base` with the adapter's values (to evaluate or continue training it). The
// adapter must fit the base (check_adapter_fits: the first mismatching tensor is named).
TrainableModel load_peft_adapter(const Model& base, const std::string& dir);

}  // namespace lora
