#include "vision/lora_conv2d.h"

#include <cmath>

#include "core/error.h"

namespace lora::vision {

LoraConv2d::LoraConv2d(std::string path_, const Conv2dShape& base, int64_t r_, float scaling_, std::mt19937_64& rng)
    : path(std::move(path_)), r(r_), scaling(scaling_) {
  lora_a = Tensor(DType::F32, {r, base.in_channels, base.kernel_h, base.kernel_w});
  lora_b = Tensor(DType::F32, {base.out_channels, r, 1, 1});
  grad_a = Tensor(DType::F32, lora_a.shape());
  grad_b = Tensor(DType::F32, lora_b.shape());
  const double bound = 1.0 / std::sqrt(double(base.in_channels * base.kernel_h * base.kernel_w));
  std::uniform_real_distribution<double> u(-bound, bound);
  for (int64_t i = 0; i < lora_a.numel(); ++i) lora_a.f32()[i] = float(u(rng));
}

Conv2dShape LoraConv2d::a_shape(const Conv2dShape& base) const {
  Conv2dShape s = base;
  s.out_channels = r;
  return s;
}

Conv2dShape LoraConv2d::b_shape(const Conv2dShape& base) const {
  return Conv2dShape{.in_channels = r, .out_channels = base.out_channels, .kernel_h = 1, .kernel_w = 1,
                     .stride = 1, .padding = 0};
}

Tensor LoraConv2d::delta_weight() const {
  const int64_t o = lora_b.dim(0), k = lora_a.numel() / r;
  Tensor d(DType::F32, {o, lora_a.dim(1), lora_a.dim(2), lora_a.dim(3)});
  for (int64_t i = 0; i < o; ++i)
    for (int64_t j = 0; j < k; ++j) {
      double acc = 0;
      for (int64_t q = 0; q < r; ++q) acc += double(lora_b.f32()[i * r + q]) * lora_a.f32()[q * k + j];
      d.f32()[i * k + j] = float(scaling * acc);
    }
  return d;
}

Tensor adapted_conv2d_forward(const Conv2dParams& p, const Tensor& x, Conv2dSaved* saved) {
  Tensor y = conv2d_forward(p.shape, x, *p.weight, p.bias);
  if (!p.lora) return y;
  const LoraConv2d& l = *p.lora;
  Tensor h = conv2d_forward(l.a_shape(p.shape), x, l.lora_a, nullptr);
  const Tensor delta = conv2d_forward(l.b_shape(p.shape), h, l.lora_b, nullptr);
  float* yp = y.f32();
  const float* dp = delta.f32();
  for (int64_t i = 0, n = y.numel(); i < n; ++i) yp[i] += l.scaling * dp[i];
  if (saved) saved->h = std::move(h);
  return y;
}

Tensor adapted_conv2d_backward(const Conv2dParams& p, const Tensor& x, const Tensor& dy, const Conv2dSaved& saved,
                               bool need_dx) {
  if (p.weight_grad) conv2d_backward_weights(p.shape, x, dy, *p.weight_grad, p.bias_grad);
  else if (p.bias_grad) {
    const int64_t n = dy.dim(0), o = dy.dim(1), plane = dy.dim(2) * dy.dim(3);
    for (int64_t b = 0; b < n; ++b)
      for (int64_t c = 0; c < o; ++c) {
        double s = 0;
        for (int64_t i = 0; i < plane; ++i) s += dy.f32()[(b * o + c) * plane + i];
        p.bias_grad->f32()[c] += float(s);
      }
  }
  Tensor dx;
  if (need_dx) {
    dx = Tensor(DType::F32, x.shape());
    conv2d_backward_data(p.shape, dy, *p.weight, dx, false);
  }
  if (!p.lora) return dx;
  LoraConv2d& l = *p.lora;
  if (saved.h.empty()) fail("conv2d backward of {}: the forward did not save the adapter's hidden map", l.path);
  Tensor g(DType::F32, dy.shape());
  for (int64_t i = 0, n = dy.numel(); i < n; ++i) g.f32()[i] = l.scaling * dy.f32()[i];
  conv2d_backward_weights(l.b_shape(p.shape), saved.h, g, l.grad_b, nullptr);
  Tensor dh(DType::F32, saved.h.shape());
  conv2d_backward_data(l.b_shape(p.shape), g, l.lora_b, dh, false);
  conv2d_backward_weights(l.a_shape(p.shape), x, dh, l.grad_a, nullptr);
  if (need_dx) conv2d_backward_data(l.a_shape(p.shape), dh, l.lora_a, dx, true);
  return dx;
}

}  // namespace lora::vision
