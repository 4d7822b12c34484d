#include "kernels/geglu.h"

#include <cmath>
#include <type_traits>

#include "kernels/gated_unit.h"

namespace lora {

namespace {

constexpr float kC = 0.7978845608028654f;  // √(2/π)
constexpr float kA = 0.044715f;

// GELU (tanh): s = ½(1 + tanh z) = σ(2z) with z = c (g + a g³); as tanh z = 2s − 1 and 1 − tanh² z = 4s(1 − s),
// f'(g) = ½(1 + t) + ½ g (1 − t²) c (1 + 3a g²) = s + 2c g s (1 − s)(1 + 3a g²).
struct GeluTanh {
#ifdef LORA_SIMD_AVX512
  template <typename T>
  static __m512 gate(__m512 g) {
    const __m512 z = _mm512_mul_ps(_mm512_set1_ps(kC), _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(kA), g), _mm512_mul_ps(g, g), g));
    const __m512 minus_2z = _mm512_mul_ps(_mm512_set1_ps(-2.0f), z), one = _mm512_set1_ps(1.0f);
    const __m512 e = std::is_same_v<T, float> ? simd::exp(minus_2z) : simd::exp_fast(minus_2z);
    return _mm512_div_ps(one, _mm512_add_ps(one, e));
  }
  static __m512 slope(__m512 g, __m512 s) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.0f * kC), g), _mm512_mul_ps(s, _mm512_sub_ps(one, s)));
    return _mm512_fmadd_ps(t, _mm512_fmadd_ps(_mm512_set1_ps(3.0f * kA), _mm512_mul_ps(g, g), one), s);
  }
#endif
  static float gate(float g) { return 0.5f * (1.0f + std::tanh(kC * (g + kA * g * g * g))); }
  static float slope(float g, float s) { return s + 2.0f * kC * g * s * (1.0f - s) * (1.0f + 3.0f * kA * g * g); }
};

}  // namespace

void geglu_forward(const float* gate, const float* up, float* out, int64_t n) {
  geglu_forward<float>(gate, up, out, nullptr, nullptr, n);
}

template <typename T>
void geglu_forward(const float* gate, const float* up, T* act, T* gate_keep, T* up_keep, int64_t n) {
  gated_unit::forward<GeluTanh>(gate, up, act, gate_keep, up_keep, n);
}

template <typename T, typename G>
void geglu_backward(const float* dout, const T* gate, const T* up, G* dgate, G* dup, int64_t n) {
  gated_unit::backward<GeluTanh>(dout, gate, up, dgate, dup, n);
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
