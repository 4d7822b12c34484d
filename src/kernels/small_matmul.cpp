#include "kernels/small_matmul.h"

#include <omp.h>

#include <algorithm>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/simd.h"

namespace lora {

namespace {

// A few rows times a transposed B (decode: one token against A or B of an adapter): dot products of
// contiguous rows, no packing.
template <class X, class Y>
void rows_times_transposed(const MatView& a, const MatView& b, const MutMatView& c, float alpha, float beta) {
  const int64_t M = a.rows, N = b.rows, K = a.cols;
  const X* x = static_cast<const X*>(a.data);
  const Y* y = static_cast<const Y*>(b.data);
  const bool parallel = double(M) * double(N) * double(K) > 2e5 && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t j = 0; j < N; ++j)
    for (int64_t i = 0; i < M; ++i) {
      float& out = c.data[i * c.stride + j];
      const float v = alpha * simd::dot(x + i * a.stride, y + j * b.stride, K);
      out = beta == 0.0f ? v : v + beta * out;
    }
}

// A few rows times a plain B [K x N] (an adapter's u = A x times Bᵀ stored [r x out]): each row of C is
// Σ_k a[i][k] · (row k of B), whole vectors of B's rows and no horizontal sums, which is what a short K
// (the rank) needs; the columns are shared out in blocks when there is enough of them.
template <class X, class Y>
void rows_times_plain(const MatView& a, const MatView& b, const MutMatView& c, float alpha, float beta) {
  const int64_t M = a.rows, K = a.cols, N = b.cols;
  const X* x = static_cast<const X*>(a.data);
  const Y* y = static_cast<const Y*>(b.data);
  constexpr int64_t kColumns = 256;  // one block of C's row: 16 vectors, in registers across the k loop
  const int64_t blocks = (N + kColumns - 1) / kColumns;
  const bool parallel = double(M) * double(N) * double(K) > 2e5 && blocks > 1 && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t j0 = blk * kColumns, nj = std::min<int64_t>(kColumns, N - j0);
    for (int64_t i = 0; i < M; ++i) {
      float* out = c.data + i * c.stride + j0;
#ifdef LORA_SIMD_AVX512
      __m512 acc[kColumns / 16];
      const int64_t nv = (nj + 15) / 16;
      for (int64_t v = 0; v < nv; ++v) acc[v] = _mm512_setzero_ps();
      for (int64_t k = 0; k < K; ++k) {
        const __m512 xk = _mm512_set1_ps(simd::to_f32(x[i * a.stride + k]));
        const Y* row = y + k * b.stride + j0;
        for (int64_t v = 0; v < nv; ++v)
          acc[v] = _mm512_fmadd_ps(xk, simd::load(row + 16 * v, simd::first_lanes(nj - 16 * v)), acc[v]);
      }
      const __m512 al = _mm512_set1_ps(alpha), be = _mm512_set1_ps(beta);
      for (int64_t v = 0; v < nv; ++v) {
        const __mmask16 m = simd::first_lanes(nj - 16 * v);
        __m512 r = _mm512_mul_ps(al, acc[v]);
        if (beta != 0.0f) r = _mm512_fmadd_ps(be, simd::load(out + 16 * v, m), r);
        simd::store(out + 16 * v, r, m);
      }
#else
      for (int64_t j = 0; j < nj; ++j) {
        float acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += simd::to_f32(x[i * a.stride + k]) * simd::to_f32(y[k * b.stride + j0 + j]);
        out[j] = beta == 0.0f ? alpha * acc : alpha * acc + beta * out[j];
      }
#endif
    }
  }
}

template <template <class, class> class Kernel>
void by_operand_types(const MatView& a, const MatView& b, const MutMatView& c, float alpha, float beta) {
  if (a.dtype == DType::F32)
    b.dtype == DType::F32 ? Kernel<float, float>::run(a, b, c, alpha, beta) : Kernel<float, bf16>::run(a, b, c, alpha, beta);
  else
    b.dtype == DType::F32 ? Kernel<bf16, float>::run(a, b, c, alpha, beta) : Kernel<bf16, bf16>::run(a, b, c, alpha, beta);
}

template <class X, class Y>
struct Transposed {
  static void run(const MatView& a, const MatView& b, const MutMatView& c, float al, float be) {
    rows_times_transposed<X, Y>(a, b, c, al, be);
  }
};
template <class X, class Y>
struct Plain {
  static void run(const MatView& a, const MatView& b, const MutMatView& c, float al, float be) {
    rows_times_plain<X, Y>(a, b, c, al, be);
  }
};

}  // namespace

void small_matmul(const MatView& a, bool trans_a, const MatView& b, bool trans_b, const MutMatView& c, float alpha,
                  float beta) {
  const bool plain = !a.quant && !b.quant && (a.dtype == DType::F32 || a.dtype == DType::BF16) &&
                     (b.dtype == DType::F32 || b.dtype == DType::BF16);
  if (!plain || a.rows > 4 || trans_a || a.cols == 0)
    return matmul(a, trans_a, b, trans_b, c, alpha, beta);  // everything else: oneDNN does these well
  const int64_t b_depth = trans_b ? b.cols : b.rows, b_width = trans_b ? b.rows : b.cols;
  if (b_depth != a.cols || c.rows != a.rows || c.cols != b_width)
    fail("small_matmul: shapes [{}x{}] x [{}x{}]{} -> [{}x{}] do not match", a.rows, a.cols, b.rows, b.cols,
         trans_b ? "ᵀ" : "", c.rows, c.cols);
  trans_b ? by_operand_types<Transposed>(a, b, c, alpha, beta) : by_operand_types<Plain>(a, b, c, alpha, beta);
}

}  // namespace lora
