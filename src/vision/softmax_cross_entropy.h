#pragma once
// Cross-entropy over classes, torch.nn.functional.cross_entropy with mean reduction:
//
//   loss = −(1/N) Σ_n log softmax(z_n)[y_n]        dz_n = (softmax(z_n) − onehot(y_n)) / N
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace lora::vision {

// logits [N, C]; returns the mean loss and writes dlogits [N, C] when not null.
double softmax_cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels, Tensor* dlogits);

// softmax of each row, in double for the probabilities printed by predict.
std::vector<double> softmax_row(const float* z, int64_t classes);

}  // namespace lora::vision
