#pragma once
// A Conv2d with a LoRA adapter beside its frozen kernel, in PEFT's layout:
//
//   y = conv(x, W) + b + s · conv1x1(conv(x, A), B),      s = alpha / r
//
// A [r, C, kh, kw] is a convolution with the base layer's kernel size, stride and padding and r output
// channels; B [O, r, 1, 1] is a 1x1 convolution back to O channels. Together they are the rank-r kernel
// ΔW[o,c,u,v] = s · Σ_k B[o,k] A[k,c,u,v]. Backward, with g = s · dy:
//
//   dB = conv_backward_weights(h, g)      with h = conv(x, A)
//   dh = conv_backward_data(B, g)
//   dA = conv_backward_weights(x, dh)
//   dx = conv_backward_data(W, dy) + conv_backward_data(A, dh)
//
// Any part may be absent: no adapter (a frozen or fully trained conv), no bias.
#include <cstdint>
#include <random>
#include <string>

#include "core/tensor.h"
#include "vision/conv2d.h"

namespace lora::vision {

struct LoraConv2d {
  std::string path;  // module path, e.g. "features.0"
  int64_t r = 0;
  float scaling = 1.0f;
  Tensor lora_a, lora_b;  // [r, C, kh, kw], [O, r, 1, 1]
  Tensor grad_a, grad_b;

  LoraConv2d() = default;
  // PEFT's default init: A ~ kaiming_uniform(a = sqrt(5)) = U(−1/sqrt(C·kh·kw), +), B = 0.
  LoraConv2d(std::string path, const Conv2dShape& base, int64_t r, float scaling, std::mt19937_64& rng);

  Conv2dShape a_shape(const Conv2dShape& base) const;  // base kernel, stride, padding; r outputs
  Conv2dShape b_shape(const Conv2dShape& base) const;  // 1x1, r -> O
  Tensor delta_weight() const;                          // s · B A as an [O, C, kh, kw] kernel
};

struct Conv2dParams {
  Conv2dShape shape;
  const Tensor* weight = nullptr;  // [O, C, kh, kw]
  const Tensor* bias = nullptr;    // [O] or null
  LoraConv2d* lora = nullptr;      // null: plain conv
  Tensor* weight_grad = nullptr;   // accumulated when the kernel is trained (full fine-tuning)
  Tensor* bias_grad = nullptr;     // accumulated when the bias is trained
};

struct Conv2dSaved {
  Tensor h;  // conv(x, A): the adapter's r-channel hidden map
};

Tensor adapted_conv2d_forward(const Conv2dParams& p, const Tensor& x, Conv2dSaved* saved);

// Accumulates every trainable part's gradient; returns dx, or an empty tensor when !need_dx.
Tensor adapted_conv2d_backward(const Conv2dParams& p, const Tensor& x, const Tensor& dy, const Conv2dSaved& saved,
                               bool need_dx);

}  // namespace lora::vision
