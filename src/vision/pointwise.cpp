#include "vision/pointwise.h"

#include <cmath>

#include "core/error.h"

namespace lora::vision {

void relu_forward(Tensor& x) {
  float* p = x.f32();
  const int64_t n = x.numel();
#pragma omp parallel for simd
  for (int64_t i = 0; i < n; ++i) p[i] = p[i] > 0.0f ? p[i] : 0.0f;
}

void relu_backward(const Tensor& y, Tensor& dy) {
  const float* out = y.f32();
  float* g = dy.f32();
  const int64_t n = dy.numel();
#pragma omp parallel for simd
  for (int64_t i = 0; i < n; ++i) g[i] = out[i] > 0.0f ? g[i] : 0.0f;
}

void dropout_forward(Tensor& x, float p, std::mt19937_64& rng, Tensor& keep) {
  keep = Tensor(DType::U8, x.shape());
  std::bernoulli_distribution kept(1.0 - p);
  const float scale = 1.0f / (1.0f - p);
  float* v = x.f32();
  uint8_t* k = keep.data_as<uint8_t>();
  for (int64_t i = 0, n = x.numel(); i < n; ++i) {
    k[i] = kept(rng) ? 1 : 0;
    v[i] = k[i] ? v[i] * scale : 0.0f;
  }
}

void dropout_backward(Tensor& dy, float p, const Tensor& keep) {
  const float scale = 1.0f / (1.0f - p);
  float* g = dy.f32();
  const uint8_t* k = keep.data_as<uint8_t>();
  for (int64_t i = 0, n = dy.numel(); i < n; ++i) g[i] = k[i] ? g[i] * scale : 0.0f;
}

FoldedBatchNorm fold_batchnorm(const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                               const Tensor& running_var, float eps) {
  const int64_t c = gamma.numel();
  FoldedBatchNorm bn{Tensor(DType::F32, {c}), Tensor(DType::F32, {c})};
  for (int64_t i = 0; i < c; ++i) {
    // In double, as torch's eval-mode batch norm computes (x − mean) / sqrt(var + eps) · γ + β in one expression.
    const double scale = double(gamma.f32()[i]) / std::sqrt(double(running_var.f32()[i]) + eps);
    bn.scale.f32()[i] = float(scale);
    bn.shift.f32()[i] = float(double(beta.f32()[i]) - double(running_mean.f32()[i]) * scale);
  }
  return bn;
}

void channel_affine_forward(const FoldedBatchNorm& bn, Tensor& x) {
  const int64_t n = x.dim(0), c = x.dim(1), plane = x.dim(2) * x.dim(3);
  if (bn.scale.numel() != c) fail("batch_norm: {} channels, the layer has {}", c, bn.scale.numel());
  float* p = x.f32();
#pragma omp parallel for collapse(2)
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch) {
      const float s = bn.scale.f32()[ch], t = bn.shift.f32()[ch];
      float* row = p + (b * c + ch) * plane;
      for (int64_t i = 0; i < plane; ++i) row[i] = row[i] * s + t;
    }
}

void channel_affine_backward(const FoldedBatchNorm& bn, Tensor& dy) {
  const int64_t n = dy.dim(0), c = dy.dim(1), plane = dy.dim(2) * dy.dim(3);
  float* p = dy.f32();
#pragma omp parallel for collapse(2)
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch) {
      const float s = bn.scale.f32()[ch];
      float* row = p + (b * c + ch) * plane;
      for (int64_t i = 0; i < plane; ++i) row[i] *= s;
    }
}

}  // namespace lora::vision
