#pragma once
// Between a LoRA TrainableModel (what trains) and an Adapter (what is saved, shared and applied).
#include "adapters/adapter.h"
#include "train/trainable_model.h"

namespace lora {

// The adapter a LoRA TrainableModel has trained, as PEFT would save it: LoRA factors (copies), DoRA
// magnitudes, trained biases, modules_to_save weights, and the base embedding/head copies PEFT saves
// beside an embedding/lm_head LoRA. PiSSA becomes the equivalent plain LoRA of rank 2r on the original
// base: W + s·(BA − B₀A₀) = W + s·[B, −B₀]·[A; A₀].
Adapter adapter_from_trainable(const TrainableModel& model);

// A LoRA TrainableModel for `base` holding the adapter's values. The adapter must already fit the base
// (check_adapter_fits); one that replaces the base embedding through a saved embedding layer is refused.
TrainableModel trainable_from_adapter(const Model& base, const Adapter& adapter);

}  // namespace lora
