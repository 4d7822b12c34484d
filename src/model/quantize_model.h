#pragma once
// QLoRA's base model: the linear layers of every block (q, k, v, o, gate, up, down) quantized with
// bitsandbytes' formats (core/quant.h); embeddings, norms, biases and lm_head keep 16/32 bits.
#include <array>
#include <optional>

#include "core/quant.h"
#include "model/model.h"

namespace lora {

// The seven projection weights of a block, in Hugging Face order.
std::array<Tensor*, 7> linear_weights(LayerWeights& l);
std::array<const Tensor*, 7> linear_weights(const LayerWeights& l);

// Quantizes every linear weight that is not quantized yet (one at a time: the full-precision copy of a
// weight is released as soon as its quantized form exists). A weight already quantized to another type
// is an error; one already in the requested type is kept.
void quantize_linear_weights(Model& m, const QuantConfig& config);

bool has_quantized_weights(const Model& m);

// A quantized weight decoded to full precision in its source dtype (bf16 stays bf16, f32 and f16
// become f32); any other tensor is returned as is.
Tensor dequantize_weight(const Tensor& t);

struct QuantSummary {
  int64_t tensors = 0, elements = 0;
  size_t bytes = 0;              // packed codes and quantization state
  double bits_per_weight = 0;
};
// Over the quantized linear weights of `m`.
QuantSummary quant_summary(const Model& m);

}  // namespace lora
