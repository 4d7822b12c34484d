#include "kernels/rmsnorm.h"

#include <cmath>
#include <vector>

namespace lora {

void rmsnorm_forward(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps,
                     float* rstd) {
#pragma omp parallel for if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    // Sum of squares in double: over 4k-wide rows the fp32 sum drifts more than the 1e-4 the oracle allows.
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
    const float rs = float(1.0 / std::sqrt(ss / double(dim) + double(eps)));
    if (rstd) rstd[r] = rs;
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * rs * weight[i];
  }
}

void rmsnorm_backward(const float* dy, const float* x, const float* weight, const float* rstd, float* dx,
                      float* dweight, int64_t rows, int64_t dim) {
#pragma omp parallel
  {
    // Each thread sums its rows' dweight privately; the partial sums are added once at the end.
    std::vector<float> dw_local(dweight ? size_t(dim) : 0, 0.0f);
#pragma omp for
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dy + r * dim;
      float* dxr = dx + r * dim;
      const float rs = rstd[r];
      double dot = 0;  // Σ dyᵢ wᵢ xᵢ
      for (int64_t i = 0; i < dim; ++i) dot += double(dyr[i]) * weight[i] * xr[i];
      const float c = float(dot) * rs * rs * rs / float(dim);
      for (int64_t i = 0; i < dim; ++i) dxr[i] = rs * weight[i] * dyr[i] - c * xr[i];
      if (dweight)
        for (int64_t i = 0; i < dim; ++i) dw_local[i] += dyr[i] * xr[i] * rs;
    }
    if (dweight) {
#pragma omp critical
      for (int64_t i = 0; i < dim; ++i) dweight[i] += dw_local[i];
    }
  }
}

}  // namespace lora
