#include "kernels/geglu.h"

#include <cmath>

#include "kernels/simd.h"

namespace lora {

namespace {

constexpr int64_t kParallelAbove = 16384;  // elements: below this a parallel region costs more than it saves
constexpr float kC = 0.7978845608028654f;  // √(2/π)
constexpr float kA = 0.044715f;

// tanh(c (g + a g³)), the one transcendental both passes need.
inline float gelu_tanh_of(float g) { return std::tanh(kC * (g + kA * g * g * g)); }

}  // namespace

void geglu_forward(const float* gate, const float* up, float* out, int64_t n) {
  geglu_forward<float>(gate, up, out, nullptr, nullptr, n);
}

template <typename T>
void geglu_forward(const float* gate, const float* up, T* act, T* gate_keep, T* up_keep, int64_t n) {
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i], u = up[i];
    if (gate_keep) simd::put(gate_keep[i], g);
    if (up_keep) simd::put(up_keep[i], u);
    simd::put(act[i], 0.5f * g * (1.0f + gelu_tanh_of(g)) * u);
  }
}

template <typename T, typename G>
void geglu_backward(const float* dout, const T* gate, const T* up, G* dgate, G* dup, int64_t n) {
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t i = 0; i < n; ++i) {
    const float g = simd::to_f32(gate[i]), u = simd::to_f32(up[i]), d = dout[i];
    const float t = gelu_tanh_of(g);
    const float dgelu = 0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * kC * (1.0f + 3.0f * kA * g * g);
    simd::put(dgate[i], d * u * dgelu);
    simd::put(dup[i], d * 0.5f * g * (1.0f + t));
  }
}

void geglu_forward_reference(const float* gate, const float* up, float* out, int64_t n) {
  const double c = std::sqrt(2.0 / M_PI), a = 0.044715;
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = float(0.5 * g * (1.0 + std::tanh(c * (g + a * g * g * g))) * double(up[i]));
  }
}

void geglu_backward_reference(const float* dout, const float* gate, const float* up, float* dgate, float* dup, int64_t n) {
  const double c = std::sqrt(2.0 / M_PI), a = 0.044715;
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i], t = std::tanh(c * (g + a * g * g * g));
    const double dgelu = 0.5 * (1.0 + t) + 0.5 * g * (1.0 - t * t) * c * (1.0 + 3.0 * a * g * g);
    dgate[i] = float(double(dout[i]) * double(up[i]) * dgelu);
    dup[i] = float(double(dout[i]) * 0.5 * g * (1.0 + t));
  }
}

template void geglu_forward<float>(const float*, const float*, float*, float*, float*, int64_t);
template void geglu_forward<bf16>(const float*, const float*, bf16*, bf16*, bf16*, int64_t);
template void geglu_backward<float, float>(const float*, const float*, const float*, float*, float*, int64_t);
template void geglu_backward<bf16, bf16>(const float*, const bf16*, const bf16*, bf16*, bf16*, int64_t);

}  // namespace lora
