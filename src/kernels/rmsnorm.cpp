#include "kernels/rmsnorm.h"

#include <cmath>

namespace lora {

void rmsnorm_forward(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps) {
#pragma omp parallel for if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    // Sum of squares in double: over 4k-wide rows the fp32 sum drifts more than the 1e-4 the oracle allows.
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
    const float rstd = float(1.0 / std::sqrt(ss / double(dim) + double(eps)));
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * rstd * weight[i];
  }
}

}  // namespace lora
