#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace lora {

// y = x · r · weight with r = 1 / sqrt(mean(x²) + eps), row by row over `rows` rows of `dim` values; y is
// f32 or bf16 (Y = float or bf16: the cast is part of the pass). When rstd is given, r of each row is stored
// there for the backward pass.
template <typename Y>
void rmsnorm_forward(const float* x, const float* weight, Y* y, int64_t rows, int64_t dim, float eps,
                     float* rstd = nullptr);

// dx = r · weight ⊙ dy − r³/dim · x · Σᵢ(dyᵢ weightᵢ xᵢ);  dweight += Σ_rows dy ⊙ x · r.
// dx is overwritten; dweight (may be null) is accumulated.
void rmsnorm_backward(const float* dy, const float* x, const float* weight, const float* rstd, float* dx,
                      float* dweight, int64_t rows, int64_t dim);

}  // namespace lora
