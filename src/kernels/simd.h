#pragma once
// The vector helpers the kernels share: AVX-512 when the compiler targets it (LORA_NATIVE on an AVX-512
// machine), with the scalar forms the same kernels fall back to elsewhere.
//
// Both exps below give 0 for inputs below -87.3 (as expf underflows), so a masked score of -inf becomes a
// probability of exactly 0.
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "core/dtype.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#include <immintrin.h>
#define LORA_SIMD_AVX512 1
// GCC 12's AVX-512 headers initialize their "undefined" registers from themselves, which
// -Wmaybe-uninitialized reports at every inlined conversion intrinsic; the values are never read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#if defined(LORA_SIMD_AVX512) && defined(__AVX512BF16__)
#define LORA_SIMD_AVX512_BF16 1
#endif

namespace lora::simd {

inline float exp_scalar(float x) { return std::exp(x); }

#ifdef LORA_SIMD_AVX512
namespace detail {
// e^x in double for |x| <= 88.4: n = round(x / ln2), r = x − n·ln2 (|r| <= ln2/2, ln2 in two parts so that
// n·ln2 is exact), e^r by its Taylor series to r⁹/9! (relative error < 1e-11), times 2^n.
inline __m512d exp_pd(__m512d x) {
  const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(6.93147180369123816490e-01), x);
  r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.90821492927058770002e-10), r);
  __m512d p = _mm512_set1_pd(1.0 / 362880);
  for (double c : {1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1.0, 1.0})
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c));
  return _mm512_scalef_pd(p, n);
}
}  // namespace detail

// e^x as std::exp rounds it in all but ~1 in 10⁵ cases (then by one ulp): computed in double and rounded
// once. The fp32 kernels use this one: an exp that is off by an ulp in a few percent of cases already moves
// the fp32 results measurably away from the fp64 oracle's after ten AdamW steps.
inline __m512 exp(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.33654f), hi = _mm512_set1_ps(88.37626f);
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
  const __m256 low = _mm512_cvtpd_ps(detail::exp_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(x))));
  const __m256 high = _mm512_cvtpd_ps(detail::exp_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1))));
  return _mm512_maskz_mov_ps(~underflow, _mm512_insertf32x8(_mm512_castps256_ps512(low), high, 1));
}

// e^x in single precision, about twice as fast (relative error at most 7.5e-8, 1.2 ulp): for kernels whose
// results are rounded to bf16 anyway.
inline __m512 exp_fast(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.33654f), hi = _mm512_set1_ps(88.37626f);
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);  // Cephes' expf polynomial, by Horner's rule to the end
  for (float c : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f, 1.0f, 1.0f})
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  return _mm512_maskz_mov_ps(~underflow, _mm512_scalef_ps(p, n));
}

// σ(x) = 1 / (1 + e^-x)
inline __m512 sigmoid(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, exp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

// Mask of the first n (0..16) lanes.
inline __mmask16 first_lanes(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// 16 bf16 values (round to nearest even) from 16 floats, and back.
inline __m256i to_bf16(__m512 v) {
#ifdef LORA_SIMD_AVX512_BF16
  return (__m256i)_mm512_cvtneps_pbh(v);
#else
  __m512i b = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  b = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(b, 16));
#endif
}
inline __m512 from_bf16(__m256i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16)); }

// 16 values (the lanes of m) from or to f32 or bf16 storage, as f32 in the register.
inline __m512 load(const float* p, __mmask16 m = 0xffff) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load(const bf16* p, __mmask16 m = 0xffff) { return from_bf16(_mm256_maskz_loadu_epi16(m, p)); }
inline void store(float* p, __m512 v, __mmask16 m = 0xffff) { _mm512_mask_storeu_ps(p, m, v); }
inline void store(bf16* p, __m512 v, __mmask16 m = 0xffff) { _mm256_mask_storeu_epi16(p, m, to_bf16(v)); }
#endif

// One value of f32 or bf16 storage, as f32, and back (round to nearest even).
inline float to_f32(float x) { return x; }
inline float to_f32(bf16 x) { return bf16_to_f32(x); }
inline void put(float& dst, float v) { dst = v; }
inline void put(bf16& dst, float v) { dst = f32_to_bf16(v); }

// The largest of x[0..n) (-inf for n = 0).
inline float max_of(const float* x, int64_t n) {
#ifdef LORA_SIMD_AVX512
  __m512 m = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) m = _mm512_max_ps(m, _mm512_mask_loadu_ps(m, first_lanes(n - j), x + j));
  return _mm512_reduce_max_ps(m);
#else
  float m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
#endif
}

// Σ x[i] y[i] over n values of f32 or bf16 storage, accumulated in f32.
template <typename X, typename Y>
inline float dot(const X* x, const Y* y, int64_t n) {
#ifdef LORA_SIMD_AVX512
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = first_lanes(n - i);
    acc = _mm512_fmadd_ps(load(x + i, m), load(y + i, m), acc);
  }
  return _mm512_reduce_add_ps(acc);
#else
  float acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += to_f32(x[i]) * to_f32(y[i]);
  return acc;
#endif
}

}  // namespace lora::simd
