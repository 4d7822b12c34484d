#pragma once
// The element-wise passes between the kernels of a training step: residual adds and the casts to the storage
// type the next GEMM reads. One pass each, vectorized, parallel when large.
#include <cstdint>

#include "core/dtype.h"

namespace lora {

// y += x over n values.
void add_into(float* y, const float* x, int64_t n);

// x *= s over n values (Gemma's embedding scale and query scale).
void scale_in_place(float* x, float s, int64_t n);

// y += x, and copy = y in the storage type E (float or bf16): the residual gradient and its GEMM operand in
// one pass.
template <typename E>
void add_into_and_store(float* y, const float* x, E* copy, int64_t n);

// out = x rounded to E (float: a copy).
template <typename E>
void store_as(const float* x, E* out, int64_t n);

}  // namespace lora
