#pragma once
// Folding a trained adapter into the weights: a standalone Model that computes exactly what
// base + adapter computes, for fast inference (generation, evaluation) without the adapter's extra work.
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

}  // namespace lora
