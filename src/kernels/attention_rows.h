#pragma once
// The per-row steps of blocked attention that its f32 (AVX-512) and bf16 (AMX) forms share: row maxima,
// the exponentials of a score row, scaling, dot products, and the softmax gradient.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/simd.h"

namespace lora::attention_rows {

inline float row_max(const float* s, int64_t n) {
#ifdef LORA_SIMD_AVX512
  __m512 m = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) m = _mm512_max_ps(m, _mm512_mask_loadu_ps(m, simd::first_lanes(n - j), s + j));
  return _mm512_reduce_max_ps(m);
#else
  float m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, s[j]);
  return m;
#endif
}

// p[j] = e^(s[j] − shift) for j < visible and 0 up to n; returns Σ p. `exact`: std::exp's rounding (f32
// attention), else single-precision exp (bf16 attention, whose results are rounded to bf16 anyway).
inline float exp_row(const float* s, float* p, int64_t visible, int64_t n, float shift, bool exact) {
#ifdef LORA_SIMD_AVX512
  const __m512 sh = _mm512_set1_ps(shift);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 keep = simd::first_lanes(std::max<int64_t>(0, visible - j));
    const __m512 x = _mm512_sub_ps(_mm512_maskz_loadu_ps(keep, s + j), sh);
    const __m512 e = _mm512_maskz_mov_ps(keep, exact ? simd::exp(x) : simd::exp_fast(x));
    _mm512_mask_storeu_ps(p + j, simd::first_lanes(n - j), e);
    sum = _mm512_add_ps(sum, e);
  }
  return _mm512_reduce_add_ps(sum);
#else
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    p[j] = j < visible ? std::exp(s[j] - shift) : 0.0f;
    sum += p[j];
  }
  return sum;
#endif
}

inline void scale_row(float* x, int64_t n, float a) {
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

template <typename T>
inline float dot(const float* a, const T* b, int64_t n) {
#ifdef LORA_SIMD_AVX512
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = simd::first_lanes(n - i);
    acc = _mm512_fmadd_ps(simd::load(a + i, m), simd::load(b + i, m), acc);
  }
  return _mm512_reduce_add_ps(acc);
#else
  float acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * simd::to_f32(b[i]);
  return acc;
#endif
}

// ds[j] = p[j] · (dp[j] − d) · scale over n values.
inline void softmax_grad_row(const float* p, const float* dp, float* ds, int64_t n, float d, float scale) {
  for (int64_t j = 0; j < n; ++j) ds[j] = p[j] * (dp[j] - d) * scale;
}

}  // namespace lora::attention_rows
