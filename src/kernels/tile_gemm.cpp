#include "kernels/tile_gemm.h"

#include "kernels/simd.h"

namespace lora {

void tile_gemm_reference(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool trans_a, const float* b,
                         int64_t ldb, float* c, int64_t ldc, float alpha, bool accumulate) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += double(trans_a ? a[k * lda + m] : a[m * lda + k]) * double(b[k * ldb + n]);
      c[m * ldc + n] = float(alpha * acc + (accumulate ? double(c[m * ldc + n]) : 0.0));
    }
}

#ifdef LORA_SIMD_AVX512

namespace {

// MR rows x NV vectors of 16 columns; the last vector's columns are `last` (masked loads and stores).
template <int MR, int NV>
inline void micro_kernel(int64_t K, const float* a, int64_t a_row, int64_t a_k, const float* b, int64_t ldb, float* c,
                         int64_t ldc, __mmask16 last, float alpha, bool accumulate) {
  __m512 acc[MR][NV];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(last, b + k * ldb + 16 * v) : _mm512_loadu_ps(b + k * ldb + 16 * v);
    const float* ak = a + k * a_k;
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(ak[r * a_row]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
  const __m512 al = _mm512_set1_ps(alpha);
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* cp = c + r * ldc + 16 * v;
      const __mmask16 mask = v == NV - 1 ? last : __mmask16(0xffff);
      __m512 out = _mm512_mul_ps(acc[r][v], al);
      if (accumulate) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(mask, cp));
      _mm512_mask_storeu_ps(cp, mask, out);
    }
}

template <int NV>
void rows_of(int64_t M, int64_t K, const float* a, int64_t a_row, int64_t a_k, const float* b, int64_t ldb, float* c,
             int64_t ldc, __mmask16 last, float alpha, bool accumulate) {
  int64_t m = 0;
  for (; m + 6 <= M; m += 6) micro_kernel<6, NV>(K, a + m * a_row, a_row, a_k, b, ldb, c + m * ldc, ldc, last, alpha, accumulate);
  const float* am = a + m * a_row;
  float* cm = c + m * ldc;
  switch (M - m) {
    case 5: micro_kernel<5, NV>(K, am, a_row, a_k, b, ldb, cm, ldc, last, alpha, accumulate); break;
    case 4: micro_kernel<4, NV>(K, am, a_row, a_k, b, ldb, cm, ldc, last, alpha, accumulate); break;
    case 3: micro_kernel<3, NV>(K, am, a_row, a_k, b, ldb, cm, ldc, last, alpha, accumulate); break;
    case 2: micro_kernel<2, NV>(K, am, a_row, a_k, b, ldb, cm, ldc, last, alpha, accumulate); break;
    case 1: micro_kernel<1, NV>(K, am, a_row, a_k, b, ldb, cm, ldc, last, alpha, accumulate); break;
    default: break;
  }
}

}  // namespace

void tile_gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool trans_a, const float* b, int64_t ldb,
               float* c, int64_t ldc, float alpha, bool accumulate) {
  // Element (m, k) of op(A) is at a[m·a_row + k·a_k].
  const int64_t a_row = trans_a ? 1 : lda, a_k = trans_a ? lda : 1;
  for (int64_t n0 = 0; n0 < N; n0 += 64) {
    const int64_t nn = N - n0 < 64 ? N - n0 : 64;
    const int nv = int((nn + 15) / 16);
    const __mmask16 last = simd::first_lanes(nn - 16 * (nv - 1));
    const float* bn = b + n0;
    float* cn = c + n0;
    switch (nv) {
      case 4: rows_of<4>(M, K, a, a_row, a_k, bn, ldb, cn, ldc, last, alpha, accumulate); break;
      case 3: rows_of<3>(M, K, a, a_row, a_k, bn, ldb, cn, ldc, last, alpha, accumulate); break;
      case 2: rows_of<2>(M, K, a, a_row, a_k, bn, ldb, cn, ldc, last, alpha, accumulate); break;
      default: rows_of<1>(M, K, a, a_row, a_k, bn, ldb, cn, ldc, last, alpha, accumulate); break;
    }
  }
}

#else

void tile_gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool trans_a, const float* b, int64_t ldb,
               float* c, int64_t ldc, float alpha, bool accumulate) {
  for (int64_t m = 0; m < M; ++m) {
    float* cm = c + m * ldc;
    if (!accumulate)
      for (int64_t n = 0; n < N; ++n) cm[n] = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      const float av = alpha * (trans_a ? a[k * lda + m] : a[m * lda + k]);
      const float* bk = b + k * ldb;
      for (int64_t n = 0; n < N; ++n) cm[n] += av * bk[n];
    }
  }
}

#endif

}  // namespace lora
