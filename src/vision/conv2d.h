#pragma once
// torch.nn.Conv2d (groups = 1, dilation = 1) on NCHW f32 tensors with OIHW weights:
//
//   y[n,o,i,j] = b[o] + Σ_{c,u,v} W[o,c,u,v] · x[n, c, i·s + u − p, j·s + v − p]     (zero outside x)
//
// and its two backward products, run by oneDNN's convolution primitives:
//   dx = conv_backward_data(W, dy)       (the transposed convolution of dy by W)
//   dW = conv_backward_weights(x, dy),  db[o] = Σ_{n,i,j} dy[n,o,i,j]
// conv2d_reference() is the naive loop of the formula, for the tests only.
#include <cstdint>

#include "core/tensor.h"

namespace lora::vision {

struct Conv2dShape {
  int64_t in_channels = 0, out_channels = 0;
  int64_t kernel_h = 3, kernel_w = 3;
  int64_t stride = 1, padding = 0;

  int64_t out_size(int64_t in, int64_t kernel) const { return (in + 2 * padding - kernel) / stride + 1; }
};

// x [N, C, H, W], weight [O, C, kh, kw], bias [O] or null -> y [N, O, OH, OW] (allocated here).
Tensor conv2d_forward(const Conv2dShape& s, const Tensor& x, const Tensor& weight, const Tensor* bias);

// dx [N, C, H, W] from dy: overwritten, or added to when accumulate (dx must then have x's shape).
void conv2d_backward_data(const Conv2dShape& s, const Tensor& dy, const Tensor& weight, Tensor& dx, bool accumulate);

// dW (and db when not null) accumulated from x and dy.
void conv2d_backward_weights(const Conv2dShape& s, const Tensor& x, const Tensor& dy, Tensor& dweight, Tensor* dbias);

// The formula above as loops in double precision.
Tensor conv2d_reference(const Conv2dShape& s, const Tensor& x, const Tensor& weight, const Tensor* bias);

}  // namespace lora::vision
