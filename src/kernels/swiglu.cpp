#include "kernels/swiglu.h"

#include <cmath>

namespace lora {

void swiglu_forward(const float* gate, const float* up, float* out, int64_t n) {
#pragma omp parallel for simd if (n > 16384)
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace lora
