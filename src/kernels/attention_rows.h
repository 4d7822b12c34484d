#pragma once
// What the f32 (AVX-512) and bf16 (AMX) forms of blocked attention share: the order of their work, the
// per-row steps (the exponentials of a score row, scaling, the softmax gradient; row maxima and dot
// products are simd::max_of and simd::dot), per-thread scratch, and dq's per-thread partial sums.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/simd.h"

namespace lora::attention_rows {

// Forward task t of batch · heads · query blocks: query block qb of sequence b, head h; the last query
// blocks (which see the most keys) first.
struct QueryBlockTask {
  int64_t qb, b, h;
};
inline QueryBlockTask query_block_task(int64_t task, int64_t batch, int64_t heads, int64_t n_blocks) {
  return {n_blocks - 1 - task / (batch * heads), (task / heads) % batch, task % heads};
}

// Backward task t of batch · kv heads · key blocks: key block kb of sequence b, kv head g; the first key
// blocks (which the most queries read) first.
struct KeyBlockTask {
  int64_t kb, b, g;
};
inline KeyBlockTask key_block_task(int64_t task, int64_t batch, int64_t kv_heads) {
  return {task / (batch * kv_heads), (task / kv_heads) % batch, task % kv_heads};
}

// A thread's scratch buffer, grown to at least n elements and kept between calls.
template <typename T>
T* grown(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// dq is summed over key blocks, which different threads own. Inside the parallel region each thread takes
// mine(): the first thread dq itself, every other its own zeroed copy (kept by that thread between calls);
// after the loops that fill them, add_copies() (work-shared, inside the region) adds the copies into dq.
class DqPartials {
 public:
  DqPartials(float* dq, int64_t n) : dq_(dq), n_(n), copies_(size_t(omp_get_max_threads()), nullptr) {}
  float* mine() {
    const int tid = omp_get_thread_num();
    if (tid == 0) return dq_;
    thread_local std::vector<float> copy;
    float* c = grown(copy, size_t(n_));
    std::fill(c, c + n_, 0.0f);
    return copies_[size_t(tid)] = c;
  }
  void add_copies() {
    const int nt = omp_get_num_threads();
#pragma omp for
    for (int64_t i = 0; i < n_; ++i)
      for (int t = 1; t < nt; ++t) dq_[i] += copies_[size_t(t)][i];
  }

 private:
  float* dq_;
  int64_t n_;
  std::vector<float*> copies_;
};

// The keys a query at position `pos` sees inside the key block [k0, k0 + nk): [lo, hi), empty when hi <= lo.
// Causal (keys up to the query's own position), and with a sliding window (window > 0) only the last `window`
// positions: key j is seen when pos − window < j <= pos (transformers' and llama.cpp's sliding_window).
struct VisibleKeys {
  int64_t lo, hi;
};
inline VisibleKeys visible_keys(int64_t pos, int64_t k0, int64_t nk, int64_t window) {
  const int64_t lo = window > 0 ? std::max<int64_t>(0, pos - window + 1 - k0) : 0;
  return {std::min(lo, nk), std::min(nk, pos - k0 + 1)};
}

// The first key a query block starting at position `pos` can see, rounded down to a block boundary
// (key blocks start at multiples of `block`): 0 without a window.
inline int64_t first_key_block(int64_t pos, int64_t window, int64_t block) {
  return window > 0 ? std::max<int64_t>(0, pos - window + 1) / block * block : 0;
}

// The last query block (of n_blocks of `block` queries) whose window still reaches key `last_key`.
inline int64_t last_query_block(int64_t last_key, int64_t window, int64_t n_blocks, int64_t block) {
  return window > 0 ? std::min(n_blocks - 1, (last_key + window - 1) / block) : n_blocks - 1;
}

#ifdef LORA_SIMD_AVX512
// The lanes j .. j+15 that fall in [lo, hi).
inline __mmask16 lanes_in(int64_t lo, int64_t hi, int64_t j) {
  return __mmask16(simd::first_lanes(std::max<int64_t>(0, hi - j)) & ~simd::first_lanes(std::max<int64_t>(0, lo - j)));
}
#endif

// p[j] = e^(s[j] − shift) for the visible keys lo <= j < hi and 0 elsewhere up to n; returns Σ p. `exact`:
// std::exp's rounding (f32 attention), else single-precision exp (bf16 attention, whose results are rounded to
// bf16 anyway).
inline float exp_row(const float* s, float* p, VisibleKeys vis, int64_t n, float shift, bool exact) {
#ifdef LORA_SIMD_AVX512
  const __m512 sh = _mm512_set1_ps(shift);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 keep = lanes_in(vis.lo, vis.hi, j);
    const __m512 x = _mm512_sub_ps(_mm512_maskz_loadu_ps(keep, s + j), sh);
    const __m512 e = _mm512_maskz_mov_ps(keep, exact ? simd::exp(x) : simd::exp_fast(x));
    _mm512_mask_storeu_ps(p + j, simd::first_lanes(n - j), e);
    sum = _mm512_add_ps(sum, e);
  }
  return _mm512_reduce_add_ps(sum);
#else
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    p[j] = j >= vis.lo && j < vis.hi ? std::exp(s[j] - shift) : 0.0f;
    sum += p[j];
  }
  return sum;
#endif
}

// Soft-capping of attention scores (Gemma 2): the score x = in_scale · s becomes cap · tanh(x / cap), written back
// in the tile's own units (divided by in_scale again: the AMX form scales its scores later, the f32 form has
// in_scale 1), over a rows x n tile of row stride ld; `slope`, when given, receives d(capped)/dx = 1 − tanh²
// (same layout) for the backward.
inline void softcap_tile(float* s, int64_t rows, int64_t n, int64_t ld, float cap, float in_scale, float* slope) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      const float t = std::tanh(s[r * ld + j] * in_scale / cap);
      s[r * ld + j] = cap * t / in_scale;
      if (slope) slope[r * ld + j] = 1.0f - t * t;
    }
}

// ds[j] *= slope[j]: the gradient of the capped score carried to the raw one.
inline void times_row(float* ds, const float* slope, int64_t n) {
  for (int64_t j = 0; j < n; ++j) ds[j] *= slope[j];
}

inline void scale_row(float* x, int64_t n, float a) {
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

// ds[j] = p[j] · (dp[j] − d) · scale over n values.
inline void softmax_grad_row(const float* p, const float* dp, float* ds, int64_t n, float d, float scale) {
  for (int64_t j = 0; j < n; ++j) ds[j] = p[j] * (dp[j] - d) * scale;
}

}  // namespace lora::attention_rows
