#pragma once
// The elementwise part of a gated MLP, for any activation f(g) = g·s(g) (SwiGLU: s = σ(g); GeGLU: s = ½(1 + tanh z)):
//
//   act = f(g) ⊙ u                         forward
//   dgate = dout ⊙ u ⊙ f'(g),  dup = dout ⊙ f(g)   backward
//
// Act supplies s(g) and f'(g) given s, as 16-lane vectors (the exp rounded as the storage type T calls for:
// exact for f32 results, single precision for bf16) and as scalars:
//   template <typename T> static __m512 gate(__m512 g);     static __m512 slope(__m512 g, __m512 s);
//   static float gate(float g);                             static float slope(float g, float s);
// Internal to kernels/swiglu.cpp and kernels/geglu.cpp, which instantiate it.
#include <cstdint>

#include "kernels/simd.h"

namespace lora::gated_unit {

constexpr int64_t kParallelAbove = 16384;  // elements: below this a parallel region costs more than it saves

template <class Act, typename T>
void forward(const float* gate, const float* up, T* act, T* gate_keep, T* up_keep, int64_t n) {
#ifdef LORA_SIMD_AVX512
  const int64_t blocks = (n + 15) / 16;
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i = b * 16;
    const __mmask16 m = simd::first_lanes(n - i);
    const __m512 g = simd::load(gate + i, m), u = simd::load(up + i, m);
    if (gate_keep) simd::store(gate_keep + i, g, m);
    if (up_keep) simd::store(up_keep + i, u, m);
    simd::store(act + i, _mm512_mul_ps(_mm512_mul_ps(g, Act::template gate<T>(g)), u), m);
  }
#else
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i], u = up[i];
    if (gate_keep) simd::put(gate_keep[i], g);
    if (up_keep) simd::put(up_keep[i], u);
    simd::put(act[i], g * Act::gate(g) * u);
  }
#endif
}

template <class Act, typename T, typename G>
void backward(const float* dout, const T* gate, const T* up, G* dgate, G* dup, int64_t n) {
#ifdef LORA_SIMD_AVX512
  const int64_t blocks = (n + 15) / 16;
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i = b * 16;
    const __mmask16 m = simd::first_lanes(n - i);
    const __m512 g = simd::load(gate + i, m), u = simd::load(up + i, m), d = simd::load(dout + i, m);
    const __m512 s = Act::template gate<G>(g);
    simd::store(dgate + i, _mm512_mul_ps(_mm512_mul_ps(d, u), Act::slope(g, s)), m);
    simd::store(dup + i, _mm512_mul_ps(_mm512_mul_ps(d, g), s), m);
  }
#else
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t i = 0; i < n; ++i) {
    const float g = simd::to_f32(gate[i]), s = Act::gate(g), d = dout[i];
    simd::put(dgate[i], d * simd::to_f32(up[i]) * Act::slope(g, s));
    simd::put(dup[i], d * g * s);
  }
#endif
}

}  // namespace lora::gated_unit
