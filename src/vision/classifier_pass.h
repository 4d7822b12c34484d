#pragma once
// The forward and backward pass of a VggModel with an optional ClassifierAdapter, module by module in
// torchvision's order; classifier_backward walks the same list in reverse, each case the backward of the
// forward case above it. Backward stops at the lowest trainable module (nothing below it needs a gradient).
#include <random>
#include <vector>

#include "adapters/lora_linear.h"
#include "core/tensor.h"
#include "vision/classifier_adapter.h"
#include "vision/lora_conv2d.h"
#include "vision/pool.h"
#include "vision/vgg_model.h"

namespace lora::vision {

struct PassSaved {
  std::vector<Tensor> inputs;  // each module's input (a ReLU's, being in place, holds its output afterwards)
  std::vector<Conv2dSaved> convs;
  std::vector<LinearSaved> linears;
  std::vector<MaxPoolSaved> pools;
  std::vector<Tensor> dropout_keep;
};

// x [N, C, H, W] (preprocessed) -> logits [N, num_classes]. Dropout is active only when training (rng needed);
// `saved` (training) keeps what classifier_backward needs.
Tensor classifier_forward(const VggModel& model, ClassifierAdapter* adapter, const Tensor& x, bool training,
                          std::mt19937_64* rng, PassSaved* saved);

// Accumulates the adapter's gradients from dlogits [N, num_classes].
void classifier_backward(const VggModel& model, ClassifierAdapter& adapter, const Tensor& dlogits, PassSaved& saved);

}  // namespace lora::vision
