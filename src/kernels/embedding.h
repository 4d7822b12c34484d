#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace lora {

// out[i] = table[ids[i]] as f32, for a [vocab, dim] table in f32, bf16 or quantized (rows decoded). Ids
// out of range throw.
void embedding_forward(const Tensor& table, const int32_t* ids, int64_t n, float* out);

// dtable[ids[i]] += dout[i] for an f32 [vocab, dim] gradient (rows of repeated ids accumulate).
void embedding_backward(const float* dout, const int32_t* ids, int64_t n, float* dtable, int64_t dim);

}  // namespace lora
