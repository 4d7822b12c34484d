#include "kernels/swiglu.h"

#include <cmath>

namespace lora {

void swiglu_forward(const float* gate, const float* up, float* out, int64_t n) {
#pragma omp parallel for simd if (n > 16384)
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void swiglu_backward(const float* dout, const float* gate, const float* up, float* dgate, float* dup, int64_t n) {
#pragma omp parallel for simd if (n > 16384)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i], sig = 1.0f / (1.0f + std::exp(-g));
    const float d = dout[i];
    dgate[i] = d * up[i] * sig * (1.0f + g * (1.0f - sig));
    dup[i] = d * g * sig;
  }
}

}  // namespace lora
