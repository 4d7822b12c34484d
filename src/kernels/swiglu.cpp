#include "kernels/swiglu.h"

#include <cmath>
#include <type_traits>

#include "kernels/gated_unit.h"

namespace lora {

namespace {

// SiLU: s = σ(g), f'(g) = σ(g)(1 + g(1 − σ(g))).
struct Silu {
#ifdef LORA_SIMD_AVX512
  template <typename T>
  static __m512 gate(__m512 g) {
    const __m512 one = _mm512_set1_ps(1.0f), minus_g = _mm512_sub_ps(_mm512_setzero_ps(), g);
    const __m512 e = std::is_same_v<T, float> ? simd::exp(minus_g) : simd::exp_fast(minus_g);
    return _mm512_div_ps(one, _mm512_add_ps(one, e));
  }
  static __m512 slope(__m512 g, __m512 s) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_mul_ps(s, _mm512_fmadd_ps(g, _mm512_sub_ps(one, s), one));
  }
#endif
  static float gate(float g) { return 1.0f / (1.0f + std::exp(-g)); }
  static float slope(float g, float s) { return s * (1.0f + g * (1.0f - s)); }
};

}  // namespace

void swiglu_forward(const float* gate, const float* up, float* out, int64_t n) {
  swiglu_forward<float>(gate, up, out, nullptr, nullptr, n);
}

template <typename T>
void swiglu_forward(const float* gate, const float* up, T* act, T* gate_keep, T* up_keep, int64_t n) {
  gated_unit::forward<Silu>(gate, up, act, gate_keep, up_keep, n);
}

template <typename T, typename G>
void swiglu_backward(const float* dout, const T* gate, const T* up, G* dgate, G* dup, int64_t n) {
  gated_unit::backward<Silu>(dout, gate, up, dgate, dup, n);
}

template void swiglu_forward<float>(const float*, const float*, float*, float*, float*, int64_t);
template void swiglu_forward<bf16>(const float*, const float*, bf16*, bf16*, bf16*, int64_t);
template void swiglu_backward<float, float>(const float*, const float*, const float*, float*, float*, int64_t);
template void swiglu_backward<bf16, bf16>(const float*, const bf16*, const bf16*, bf16*, bf16*, int64_t);

}  // namespace lora
