#include "train/optimizer.h"

#include <cmath>
#include <vector>

#include "core/error.h"

namespace lora {

AdamW::AdamW(const std::vector<Param>& params, const AdamWConfig& config) : config_(config) {
  for (const Param& p : params) {
    m_.emplace_back(DType::F32, p.value->shape());
    v_.emplace_back(DType::F32, p.value->shape());
  }
}

namespace {

constexpr int64_t kParallelElements = 1 << 16;  // fewer: one thread, a parallel region would cost more

int64_t element_count(const std::vector<Param>& params) {
  int64_t n = 0;
  for (const Param& p : params) n += p.value->numel();
  return n;
}

}  // namespace

// Both passes below run over the params in parallel, a whole param per thread at a time (a LoRA has
// hundreds of small ones, too small to split), with the element loop vectorized; every element is updated
// by the same IEEE operations as one scalar loop, so the result does not depend on the thread count.
void AdamW::step(const std::vector<Param>& params, float lr) {
  if (params.size() != m_.size()) fail("AdamW: {} params, but state for {}", params.size(), m_.size());
  ++t_;
  const float b1 = config_.beta1, b2 = config_.beta2, eps = config_.eps;
  const double bias_correction1 = 1.0 - std::pow(double(b1), double(t_));
  const float bias_correction2_sqrt = float(std::sqrt(1.0 - std::pow(double(b2), double(t_))));
  const float step_size = float(lr / bias_correction1);
  const int64_t count = int64_t(params.size());
#pragma omp parallel for schedule(dynamic) if (element_count(params) > kParallelElements)
  for (int64_t i = 0; i < count; ++i) {
    float* p = params[size_t(i)].value->f32();
    const float* g = params[size_t(i)].grad->f32();
    float* m = m_[size_t(i)].f32();
    float* v = v_[size_t(i)].f32();
    const float decay = params[size_t(i)].weight_decay ? 1.0f - lr * config_.weight_decay : 1.0f;
    const int64_t n = params[size_t(i)].value->numel();
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      p[j] *= decay;
      m[j] = b1 * m[j] + (1.0f - b1) * g[j];
      v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
      const float denom = std::sqrt(v[j]) / bias_correction2_sqrt + eps;
      p[j] -= step_size * m[j] / denom;
    }
  }
}

double clip_grad_norm(const std::vector<Param>& params, double max_norm) {
  // Σ g² per param (in double, in a fixed order), then over params in order: deterministic.
  const int64_t count = int64_t(params.size());
  std::vector<double> sums(params.size());
  const bool parallel = element_count(params) > kParallelElements;
#pragma omp parallel for schedule(dynamic) if (parallel)
  for (int64_t i = 0; i < count; ++i) {
    const float* g = params[size_t(i)].grad->f32();
    const int64_t n = params[size_t(i)].grad->numel();
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; ++j) s += double(g[j]) * g[j];
    sums[size_t(i)] = s;
  }
  double ss = 0;
  for (double s : sums) ss += s;
  const double norm = std::sqrt(ss);
  const double coef = max_norm / (norm + 1e-6);
  if (max_norm > 0 && coef < 1.0) {
#pragma omp parallel for schedule(dynamic) if (parallel)
    for (int64_t i = 0; i < count; ++i) {
      float* g = params[size_t(i)].grad->f32();
      const int64_t n = params[size_t(i)].grad->numel();
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) g[j] = float(double(g[j]) * coef);
    }
  }
  return norm;
}

}  // namespace lora
