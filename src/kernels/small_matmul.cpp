#include "kernels/small_matmul.h"

#include <omp.h>

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

}  // namespace

void small_matmul(const MatView& a, bool trans_a, const MatView& b, bool trans_b, const MutMatView& c, float alpha,
                  float beta) {
  const bool plain = !a.quant && !b.quant && (a.dtype == DType::F32 || a.dtype == DType::BF16) &&
                     (b.dtype == DType::F32 || b.dtype == DType::BF16);
  if (!plain || a.rows > 4 || trans_a || !trans_b || a.cols == 0)
    return matmul(a, trans_a, b, trans_b, c, alpha, beta);  // everything else: oneDNN does these well
  if (b.cols != a.cols || c.rows != a.rows || c.cols != b.rows)
    fail("small_matmul: shapes [{}x{}] x [{}x{}]ᵀ -> [{}x{}] do not match", a.rows, a.cols, b.rows, b.cols, c.rows,
         c.cols);
  if (a.dtype == DType::F32)
    b.dtype == DType::F32 ? rows_times_transposed<float, float>(a, b, c, alpha, beta)
                          : rows_times_transposed<float, bf16>(a, b, c, alpha, beta);
  else
    b.dtype == DType::F32 ? rows_times_transposed<bf16, float>(a, b, c, alpha, beta)
                          : rows_times_transposed<bf16, bf16>(a, b, c, alpha, beta);
}

}  // namespace lora
