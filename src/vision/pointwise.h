#pragma once
// The element-wise layers of a classifier, forward and backward side by side (f32):
//
//   ReLU:          y = max(x, 0)                       dx = dy · [x > 0]
//   Dropout(p):    y = x · keep / (1 − p)              dx = dy · keep / (1 − p)     (training only)
//   BatchNorm2d in eval mode, folded into a per-channel affine map:
//                  scale[c] = γ[c] / sqrt(var[c] + eps),  shift[c] = β[c] − mean[c] · scale[c]
//                  y = x · scale[c] + shift[c]         dx = dy · scale[c]
#include <cstdint>
#include <random>

#include "core/tensor.h"

namespace lora::vision {

void relu_forward(Tensor& x);  // in place: the output is the input of the next layer
// dy is turned into dx in place, given the ReLU's output y (y > 0 exactly where x > 0).
void relu_backward(const Tensor& y, Tensor& dy);

// In place; keep receives the U8 mask (allocated here).
void dropout_forward(Tensor& x, float p, std::mt19937_64& rng, Tensor& keep);
void dropout_backward(Tensor& dy, float p, const Tensor& keep);

struct FoldedBatchNorm {
  Tensor scale, shift;  // [C]
};
FoldedBatchNorm fold_batchnorm(const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                               const Tensor& running_var, float eps);
void channel_affine_forward(const FoldedBatchNorm& bn, Tensor& x);  // NCHW, in place
void channel_affine_backward(const FoldedBatchNorm& bn, Tensor& dy);

}  // namespace lora::vision
