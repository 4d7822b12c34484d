#include "kernels/elementwise.h"

#include "kernels/simd.h"

namespace lora {

namespace {

constexpr int64_t kParallelAbove = 65536;  // elements: below this a parallel region costs more than it saves

}  // namespace

void add_into(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd if (n > kParallelAbove)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void scale_in_place(float* x, float s, int64_t n) {
#pragma omp parallel for simd if (n > kParallelAbove)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

template <typename E>
void add_into_and_store(float* y, const float* x, E* copy, int64_t n) {
#ifdef LORA_SIMD_AVX512
  const int64_t blocks = (n + 15) / 16;
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t b = 0; b < blocks; ++b) {
    const __mmask16 m = simd::first_lanes(n - b * 16);
    const __m512 v = _mm512_add_ps(simd::load(y + b * 16, m), simd::load(x + b * 16, m));
    simd::store(y + b * 16, v, m);
    simd::store(copy + b * 16, v, m);
  }
#else
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t i = 0; i < n; ++i) {
    y[i] += x[i];
    simd::put(copy[i], y[i]);
  }
#endif
}

template <typename E>
void store_as(const float* x, E* out, int64_t n) {
#ifdef LORA_SIMD_AVX512
  const int64_t blocks = (n + 15) / 16;
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t b = 0; b < blocks; ++b) {
    const __mmask16 m = simd::first_lanes(n - b * 16);
    simd::store(out + b * 16, simd::load(x + b * 16, m), m);
  }
#else
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t i = 0; i < n; ++i) simd::put(out[i], x[i]);
#endif
}

template void add_into_and_store<float>(float*, const float*, float*, int64_t);
template void add_into_and_store<bf16>(float*, const float*, bf16*, int64_t);
template void store_as<float>(const float*, float*, int64_t);
template void store_as<bf16>(const float*, bf16*, int64_t);

}  // namespace lora
