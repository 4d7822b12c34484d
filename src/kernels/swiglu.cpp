#include "kernels/swiglu.h"

#include <cmath>

#include "kernels/simd.h"

namespace lora {

namespace {

constexpr int64_t kParallelAbove = 16384;  // elements: below this a parallel region costs more than it saves

// σ(g) with the exp the storage type calls for: exact-rounded for f32 results, single precision for bf16.
#ifdef LORA_SIMD_AVX512
template <typename T>
__m512 sigmoid(__m512 g) {
  const __m512 one = _mm512_set1_ps(1.0f), minus_g = _mm512_sub_ps(_mm512_setzero_ps(), g);
  const __m512 e = std::is_same_v<T, float> ? simd::exp(minus_g) : simd::exp_fast(minus_g);
  return _mm512_div_ps(one, _mm512_add_ps(one, e));
}
#endif

}  // namespace

void swiglu_forward(const float* gate, const float* up, float* out, int64_t n) {
  swiglu_forward<float>(gate, up, out, nullptr, nullptr, n);
}

template <typename T>
void swiglu_forward(const float* gate, const float* up, T* act, T* gate_keep, T* up_keep, int64_t n) {
#ifdef LORA_SIMD_AVX512
  const int64_t blocks = (n + 15) / 16;
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i = b * 16;
    const __mmask16 m = simd::first_lanes(n - i);
    const __m512 g = simd::load(gate + i, m), u = simd::load(up + i, m);
    if (gate_keep) simd::store(gate_keep + i, g, m);
    if (up_keep) simd::store(up_keep + i, u, m);
    simd::store(act + i, _mm512_mul_ps(_mm512_mul_ps(g, sigmoid<T>(g)), u), m);
  }
#else
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i], u = up[i];
    if (gate_keep) simd::put(gate_keep[i], g);
    if (up_keep) simd::put(up_keep[i], u);
    simd::put(act[i], g / (1.0f + std::exp(-g)) * u);
  }
#endif
}

template <typename T, typename G>
void swiglu_backward(const float* dout, const T* gate, const T* up, G* dgate, G* dup, int64_t n) {
#ifdef LORA_SIMD_AVX512
  const int64_t blocks = (n + 15) / 16;
  const __m512 one = _mm512_set1_ps(1.0f);
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i = b * 16;
    const __mmask16 m = simd::first_lanes(n - i);
    const __m512 g = simd::load(gate + i, m), u = simd::load(up + i, m), d = simd::load(dout + i, m);
    const __m512 sig = sigmoid<G>(g);
    // σ(g)(1 + g(1 − σ(g)))
    const __m512 dsilu = _mm512_mul_ps(sig, _mm512_fmadd_ps(g, _mm512_sub_ps(one, sig), one));
    simd::store(dgate + i, _mm512_mul_ps(_mm512_mul_ps(d, u), dsilu), m);
    simd::store(dup + i, _mm512_mul_ps(_mm512_mul_ps(d, g), sig), m);
  }
#else
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t i = 0; i < n; ++i) {
    const float g = simd::to_f32(gate[i]), sig = 1.0f / (1.0f + std::exp(-g));
    const float d = dout[i];
    simd::put(dgate[i], d * simd::to_f32(up[i]) * sig * (1.0f + g * (1.0f - sig)));
    simd::put(dup[i], d * g * sig);
  }
#endif
}

template void swiglu_forward<float>(const float*, const float*, float*, float*, float*, int64_t);
template void swiglu_forward<bf16>(const float*, const float*, bf16*, bf16*, bf16*, int64_t);
template void swiglu_backward<float, float>(const float*, const float*, const float*, float*, float*, int64_t);
template void swiglu_backward<bf16, bf16>(const float*, const bf16*, const bf16*, bf16*, bf16*, int64_t);

}  // namespace lora
