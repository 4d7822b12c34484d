#pragma once
#include <cstdint>

namespace lora {

// y = x / sqrt(mean(x²) + eps) * weight, row by row over `rows` rows of `dim` values.
void rmsnorm_forward(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps);

}  // namespace lora
