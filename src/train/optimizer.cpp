#include "train/optimizer.h"

#include <cmath>

#include "core/error.h"

namespace lora {

AdamW::AdamW(const std::vector<Param>& params, const AdamWConfig& config) : config_(config) {
  for (const Param& p : params) {
    m_.emplace_back(DType::F32, p.value->shape());
    v_.emplace_back(DType::F32, p.value->shape());
  }
}

void AdamW::step(const std::vector<Param>& params, float lr) {
  if (params.size() != m_.size()) fail("AdamW: {} params, but state for {}", params.size(), m_.size());
  ++t_;
  const float b1 = config_.beta1, b2 = config_.beta2, eps = config_.eps;
  const double bias_correction1 = 1.0 - std::pow(double(b1), double(t_));
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(double(b2), double(t_)));
  const float step_size = float(lr / bias_correction1);
  for (size_t i = 0; i < params.size(); ++i) {
    float* p = params[i].value->f32();
    const float* g = params[i].grad->f32();
    float* m = m_[i].f32();
    float* v = v_[i].f32();
    const float decay = params[i].weight_decay ? 1.0f - lr * config_.weight_decay : 1.0f;
    const int64_t n = params[i].value->numel();
#pragma omp parallel for simd if (n > 65536)
    for (int64_t j = 0; j < n; ++j) {
      p[j] *= decay;
      m[j] = b1 * m[j] + (1.0f - b1) * g[j];
      v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
      const float denom = std::sqrt(v[j]) / float(bias_correction2_sqrt) + eps;
      p[j] -= step_size * m[j] / denom;
    }
  }
}

double clip_grad_norm(const std::vector<Param>& params, double max_norm) {
  double ss = 0;
  for (const Param& p : params) {
    const float* g = p.grad->f32();
    const int64_t n = p.grad->numel();
#pragma omp parallel for reduction(+ : ss) if (n > 65536)
    for (int64_t j = 0; j < n; ++j) ss += double(g[j]) * g[j];
  }
  const double norm = std::sqrt(ss);
  const double coef = max_norm / (norm + 1e-6);
  if (max_norm > 0 && coef < 1.0)
    for (const Param& p : params) {
      float* g = p.grad->f32();
      for (int64_t j = 0; j < p.grad->numel(); ++j) g[j] = float(g[j] * coef);
    }
  return norm;
}

}  // namespace lora
