#pragma once
// Pooling over NCHW f32 tensors.
//
// MaxPool2d(k, stride): y[n,c,i,j] = max_{u,v < k} x[n, c, i·s + u, j·s + v]; the backward routes dy to the
// arg-max of each window. Run by oneDNN's pooling primitives; the forward's workspace holds the arg-max for the
// backward.
//
// AdaptiveAvgPool2d(OH, OW), as torch computes it: output cell (i, j) averages rows
// [floor(i·H/OH), ceil((i+1)·H/OH)) and columns [floor(j·W/OW), ceil((j+1)·W/OW)); the backward spreads
// dy[i,j] / (window size) back over the window. Windows may overlap, so it is a loop rather than oneDNN's
// fixed-window pooling (when H is a multiple of OH it equals average pooling with kernel = stride = H/OH).
#include <cstdint>
#include <memory>

#include "core/tensor.h"

namespace lora::vision {

struct MaxPoolSaved {
  std::shared_ptr<void> workspace;  // oneDNN's arg-max record, opaque
  std::vector<int64_t> x_shape;
};

// x [N,C,H,W] -> [N,C,(H−k)/s+1,(W−k)/s+1]. `saved` (may be null at inference) keeps what backward needs.
Tensor maxpool2d_forward(const Tensor& x, int64_t kernel, int64_t stride, MaxPoolSaved* saved);
Tensor maxpool2d_backward(const Tensor& dy, int64_t kernel, int64_t stride, const MaxPoolSaved& saved);
Tensor maxpool2d_reference(const Tensor& x, int64_t kernel, int64_t stride);

Tensor adaptive_avgpool2d_forward(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor adaptive_avgpool2d_backward(const Tensor& dy, const std::vector<int64_t>& x_shape);

}  // namespace lora::vision
