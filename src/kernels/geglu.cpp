#include "kernels/geglu.h"

#include <cmath>
#include <type_traits>

#include "kernels/simd.h"

namespace lora {

namespace {

constexpr int64_t kParallelAbove = 16384;  // elements: below this a parallel region costs more than it saves
constexpr float kC = 0.7978845608028654f;  // √(2/π)
constexpr float kA = 0.044715f;

// tanh(c (g + a g³)), the one transcendental both passes need.
inline float gelu_tanh_of(float g) { return std::tanh(kC * (g + kA * g * g * g)); }

#ifdef LORA_SIMD_AVX512
// s = ½(1 + tanh z) = σ(2z) with z = c (g + a g³), with the exp the storage type calls for (exact-rounded for
// f32 results, single precision for bf16); then tanh z = 2s − 1 and 1 − tanh² z = 4 s (1 − s).
template <typename T>
__m512 half_one_plus_tanh(__m512 g) {
  const __m512 z = _mm512_mul_ps(_mm512_set1_ps(kC), _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(kA), g), _mm512_mul_ps(g, g), g));
  const __m512 minus_2z = _mm512_mul_ps(_mm512_set1_ps(-2.0f), z), one = _mm512_set1_ps(1.0f);
  const __m512 e = std::is_same_v<T, float> ? simd::exp(minus_2z) : simd::exp_fast(minus_2z);
  return _mm512_div_ps(one, _mm512_add_ps(one, e));
}
#endif

}  // namespace

void geglu_forward(const float* gate, const float* up, float* out, int64_t n) {
  geglu_forward<float>(gate, up, out, nullptr, nullptr, n);
}

template <typename T>
void geglu_forward(const float* gate, const float* up, T* act, T* gate_keep, T* up_keep, int64_t n) {
#ifdef LORA_SIMD_AVX512
  const int64_t blocks = (n + 15) / 16;
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i = b * 16;
    const __mmask16 m = simd::first_lanes(n - i);
    const __m512 g = simd::load(gate + i, m), u = simd::load(up + i, m);
    if (gate_keep) simd::store(gate_keep + i, g, m);
    if (up_keep) simd::store(up_keep + i, u, m);
    simd::store(act + i, _mm512_mul_ps(_mm512_mul_ps(g, half_one_plus_tanh<T>(g)), u), m);  // ½ g (1 + tanh z) u
  }
  return;
#endif
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i], u = up[i];
    if (gate_keep) simd::put(gate_keep[i], g);
    if (up_keep) simd::put(up_keep[i], u);
    simd::put(act[i], 0.5f * g * (1.0f + gelu_tanh_of(g)) * u);
  }
}

template <typename T, typename G>
void geglu_backward(const float* dout, const T* gate, const T* up, G* dgate, G* dup, int64_t n) {
#ifdef LORA_SIMD_AVX512
  const int64_t blocks = (n + 15) / 16;
  const __m512 one = _mm512_set1_ps(1.0f), two_c = _mm512_set1_ps(2.0f * kC), three_a = _mm512_set1_ps(3.0f * kA);
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i = b * 16;
    const __mmask16 m = simd::first_lanes(n - i);
    const __m512 g = simd::load(gate + i, m), u = simd::load(up + i, m), d = simd::load(dout + i, m);
    const __m512 s = half_one_plus_tanh<G>(g);
    // gelu'(g) = ½(1 + t) + ½ g (1 − t²) c (1 + 3a g²) = s + 2c g s (1 − s)(1 + 3a g²)
    const __m512 slope = _mm512_mul_ps(_mm512_mul_ps(two_c, g), _mm512_mul_ps(s, _mm512_sub_ps(one, s)));
    const __m512 dgelu = _mm512_fmadd_ps(slope, _mm512_fmadd_ps(three_a, _mm512_mul_ps(g, g), one), s);
    simd::store(dgate + i, _mm512_mul_ps(_mm512_mul_ps(d, u), dgelu), m);
    simd::store(dup + i, _mm512_mul_ps(_mm512_mul_ps(d, g), s), m);
  }
  return;
#endif
#pragma omp parallel for if (n > kParallelAbove)
  for (int64_t i = 0; i < n; ++i) {
    const float g = simd::to_f32(gate[i]), u = simd::to_f32(up[i]), d = dout[i];
    const float t = gelu_tanh_of(g);
    const float dgelu = 0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * kC * (1.0f + 3.0f * kA * g * g);
    simd::put(dgate[i], d * u * dgelu);
    simd::put(dup[i], d * 0.5f * g * (1.0f + t));
  }
}

void geglu_forward_reference(const float* gate, const float* up, float* out, int64_t n) {
  const double c = std::sqrt(2.0 / M_PI), a = 0.044715;
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = float(0.5 * g * (1.0 + std::tanh(c * (g + a * g * g * g))) * double(up[i]));
  }
}

void geglu_backward_reference(const float* dout, const float* gate, const float* up, float* dgate, float* dup, int64_t n) {
  const double c = std::sqrt(2.0 / M_PI), a = 0.044715;
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i], t = std::tanh(c * (g + a * g * g * g));
    const double dgelu = 0.5 * (1.0 + t) + 0.5 * g * (1.0 - t * t) * c * (1.0 + 3.0 * a * g * g);
    dgate[i] = float(double(dout[i]) * double(up[i]) * dgelu);
    dup[i] = float(double(dout[i]) * 0.5 * g * (1.0 + t));
  }
}

template void geglu_forward<float>(const float*, const float*, float*, float*, float*, int64_t);
template void geglu_forward<bf16>(const float*, const float*, bf16*, bf16*, bf16*, int64_t);
template void geglu_backward<float, float>(const float*, const float*, const float*, float*, float*, int64_t);
template void geglu_backward<bf16, bf16>(const float*, const bf16*, const bf16*, bf16*, bf16*, int64_t);

}  // namespace lora
