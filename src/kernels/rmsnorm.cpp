#include "kernels/rmsnorm.h"

#include <cmath>
#include <vector>

#include "kernels/simd.h"

namespace lora {

namespace {

// Σ a_i b_i c_i (c may be null: Σ a_i b_i) in double: over 4k-wide rows an fp32 sum drifts more than the
// 1e-4 the oracle allows.
double dot3(const float* a, const float* b, const float* c, int64_t n) {
#ifdef LORA_SIMD_AVX512
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = simd::first_lanes(n - i);
    __m512 p = _mm512_mul_ps(simd::load(a + i, m), simd::load(b + i, m));
    if (c) p = _mm512_mul_ps(p, simd::load(c + i, m));
    lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(p)));
    hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(p, 1)));
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
#else
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(a[i]) * b[i] * (c ? c[i] : 1.0f);
  return s;
#endif
}

}  // namespace

template <typename Y>
void rmsnorm_forward(const float* x, const float* weight, Y* y, int64_t rows, int64_t dim, float eps, float* rstd) {
#pragma omp parallel for if (rows * dim > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    Y* yr = y + r * dim;
    const float rs = float(1.0 / std::sqrt(dot3(xr, xr, nullptr, dim) / double(dim) + double(eps)));
    if (rstd) rstd[r] = rs;
#ifdef LORA_SIMD_AVX512
    const __m512 vrs = _mm512_set1_ps(rs);
    for (int64_t i = 0; i < dim; i += 16) {
      const __mmask16 m = simd::first_lanes(dim - i);
      simd::store(yr + i, _mm512_mul_ps(_mm512_mul_ps(simd::load(xr + i, m), vrs), simd::load(weight + i, m)), m);
    }
#else
    for (int64_t i = 0; i < dim; ++i) simd::put(yr[i], xr[i] * rs * weight[i]);
#endif
  }
}

template void rmsnorm_forward<float>(const float*, const float*, float*, int64_t, int64_t, float, float*);
template void rmsnorm_forward<bf16>(const float*, const float*, bf16*, int64_t, int64_t, float, float*);

void rmsnorm_backward(const float* dy, const float* x, const float* weight, const float* rstd, float* dx,
                      float* dweight, int64_t rows, int64_t dim) {
#pragma omp parallel if (rows * dim > 32768)
  {
    // Each thread sums its rows' dweight privately; the partial sums are added once at the end.
    std::vector<float> dw_local(dweight ? size_t(dim) : 0, 0.0f);
#pragma omp for
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dy + r * dim;
      float* dxr = dx + r * dim;
      const float rs = rstd[r];
      const float c = float(dot3(dyr, weight, xr, dim)) * rs * rs * rs / float(dim);
#ifdef LORA_SIMD_AVX512
      const __m512 vrs = _mm512_set1_ps(rs), vc = _mm512_set1_ps(c);
      for (int64_t i = 0; i < dim; i += 16) {
        const __mmask16 m = simd::first_lanes(dim - i);
        const __m512 xv = simd::load(xr + i, m), dyv = simd::load(dyr + i, m);
        simd::store(dxr + i, _mm512_fnmadd_ps(vc, xv, _mm512_mul_ps(_mm512_mul_ps(vrs, simd::load(weight + i, m)), dyv)), m);
        if (dweight)
          simd::store(dw_local.data() + i, _mm512_fmadd_ps(_mm512_mul_ps(dyv, xv), vrs, simd::load(dw_local.data() + i, m)), m);
      }
#else
      for (int64_t i = 0; i < dim; ++i) dxr[i] = rs * weight[i] * dyr[i] - c * xr[i];
      if (dweight)
        for (int64_t i = 0; i < dim; ++i) dw_local[i] += dyr[i] * xr[i] * rs;
#endif
    }
    if (dweight) {
#pragma omp critical
      for (int64_t i = 0; i < dim; ++i) dweight[i] += dw_local[i];
    }
  }
}

}  // namespace lora
