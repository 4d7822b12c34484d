#pragma once
// Folding adapters into the weights: a standalone Model that computes what base + adapters compute, for
// fast inference and for writing a merged model (lora merge) without the adapters' extra work.
#include <utility>
#include <vector>

#include "adapters/adapter_set.h"
#include "model/model.h"
#include "train/trainable_model.h"

namespace lora {

// W' = W + s·B·A for every adapted linear (DoRA: m ⊙ (W + s·B·A) / ‖W + s·B·A‖_row), embedding
// E' = E + s·(B·A)ᵀ, trained biases and modules_to_save copies taken over. Adapted tensors become f32
// copies; everything else stays a view of the base (which is not modified). The tokenizer is shared.
// A quantized (QLoRA) base is merged in full precision: every quantized weight is dequantized (adapted
// ones to f32, the others to their source dtype), because re-quantizing W + s·B·A would round away
// the adapter's fine detail; has_quantized_weights(base) tells a caller to say so.
Model merged_model(const TrainableModel& model);

// The set's active adapters folded in, with exactly the semantics the set applies them with on the fly
// (adapter_set.h): W' = W + Σ_i ΔW_i per module, b' = b + Σ_i scale_i (b_i − b), replaced modules taken
// over. Untouched tensors stay views of the base; a tied head is untied when only one side changes. A
// quantized base is merged in full precision, as above (every quantized weight dequantized).
Model merged_model(const AdapterSet& set);

// Convenience: these adapters (already checked against `base`) at these scales, folded into `base`.
Model merge_adapters(const Model& base, const std::vector<std::pair<Adapter, float>>& adapters);

}  // namespace lora
