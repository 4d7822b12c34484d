// The straightforward attention, one query row at a time with its whole score vector: the reference the
// blocked kernels of attention.cpp are tested against.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace lora {

void attention_forward_reference(const float* q, const float* keys, const float* values, float* out, int64_t T, int64_t pos0,
                       const AttentionShape& shape) {
  const int64_t hd = shape.head_dim, q_dim = shape.q_dim(), kv_dim = shape.kv_dim();
  const int64_t group = shape.n_heads / shape.n_kv_heads;
  const float scale = 1.0f / std::sqrt(float(hd));
  const int64_t n_keys_max = pos0 + T;

#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(n_keys_max));
#pragma omp for collapse(2) schedule(dynamic, 4)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < shape.n_heads; ++h) {
        const float* qv = q + t * q_dim + h * hd;
        const int64_t kv_off = (h / group) * hd;
        const int64_t n_keys = pos0 + t + 1;  // causal: this query sees itself and everything before,
        const int64_t first = shape.window > 0 ? std::max<int64_t>(0, n_keys - shape.window) : 0;  // or its window
        float max_score = -INFINITY;
        for (int64_t j = first; j < n_keys; ++j) {
          const float* kv = keys + j * kv_dim + kv_off;
          float dot = 0;
          for (int64_t i = 0; i < hd; ++i) dot += qv[i] * kv[i];
          scores[j] = dot * scale;
          if (shape.softcap > 0) scores[j] = shape.softcap * std::tanh(scores[j] / shape.softcap);
          max_score = std::max(max_score, scores[j]);
        }
        float sum = 0;
        for (int64_t j = first; j < n_keys; ++j) {
          scores[j] = std::exp(scores[j] - max_score);
          sum += scores[j];
        }
        const float inv_sum = 1.0f / sum;
        float* o = out + t * q_dim + h * hd;
        for (int64_t i = 0; i < hd; ++i) o[i] = 0;
        for (int64_t j = first; j < n_keys; ++j) {
          const float p = scores[j] * inv_sum;
          const float* vv = values + j * kv_dim + kv_off;
          for (int64_t i = 0; i < hd; ++i) o[i] += p * vv[i];
        }
      }
  }
}

}  // namespace lora

namespace lora {

void attention_backward_reference(const float* dout, const float* q, const float* keys, const float* values, float* dq,
                        float* dk, float* dv, int64_t T, const AttentionShape& shape) {
  const int64_t hd = shape.head_dim, q_dim = shape.q_dim(), kv_dim = shape.kv_dim();
  const int64_t group = shape.n_heads / shape.n_kv_heads;
  const float scale = 1.0f / std::sqrt(float(hd));

  // One kv head per task: dk/dv columns of different kv heads never overlap, so no two threads write
  // the same element.
#pragma omp parallel
  {
    std::vector<float> p(static_cast<size_t>(T)), dp(static_cast<size_t>(T)), slope(static_cast<size_t>(T), 1.0f);
#pragma omp for
    for (int64_t g = 0; g < shape.n_kv_heads; ++g) {
      const int64_t kv_off = g * hd;
      for (int64_t j = 0; j < T; ++j)
        for (int64_t i = 0; i < hd; ++i) dk[j * kv_dim + kv_off + i] = dv[j * kv_dim + kv_off + i] = 0.0f;
      for (int64_t h = g * group; h < (g + 1) * group; ++h)
        for (int64_t t = 0; t < T; ++t) {
          const float* qt = q + t * q_dim + h * hd;
          const float* dot = dout + t * q_dim + h * hd;
          float* dqt = dq + t * q_dim + h * hd;
          // recompute p_t over the keys it sees: first .. t
          const int64_t first = shape.window > 0 ? std::max<int64_t>(0, t + 1 - shape.window) : 0;
          float max_score = -INFINITY;
          for (int64_t j = first; j <= t; ++j) {
            const float* kj = keys + j * kv_dim + kv_off;
            float s = 0;
            for (int64_t i = 0; i < hd; ++i) s += qt[i] * kj[i];
            p[j] = s * scale;
            if (shape.softcap > 0) {  // capped score c·tanh(s/c), slope 1 − tanh²
              const float t = std::tanh(p[j] / shape.softcap);
              p[j] = shape.softcap * t;
              slope[j] = 1.0f - t * t;
            }
            max_score = std::max(max_score, p[j]);
          }
          float sum = 0;
          for (int64_t j = first; j <= t; ++j) sum += p[j] = std::exp(p[j] - max_score);
          float pdp = 0;  // Σ_j p_j dp_j
          for (int64_t j = first; j <= t; ++j) {
            p[j] /= sum;
            const float* vj = values + j * kv_dim + kv_off;
            float d = 0;
            for (int64_t i = 0; i < hd; ++i) d += dot[i] * vj[i];
            dp[j] = d;
            pdp += p[j] * d;
          }
          for (int64_t i = 0; i < hd; ++i) dqt[i] = 0.0f;
          for (int64_t j = first; j <= t; ++j) {
            const float ds = p[j] * (dp[j] - pdp) * slope[j] * scale;
            const float* kj = keys + j * kv_dim + kv_off;
            float* dkj = dk + j * kv_dim + kv_off;
            float* dvj = dv + j * kv_dim + kv_off;
            for (int64_t i = 0; i < hd; ++i) {
              dqt[i] += ds * kj[i];
              dkj[i] += ds * qt[i];
              dvj[i] += p[j] * dot[i];
            }
          }
        }
    }
  }
}

}  // namespace lora
