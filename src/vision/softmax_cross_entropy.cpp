#include "vision/softmax_cross_entropy.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace lora::vision {

std::vector<double> softmax_row(const float* z, int64_t classes) {
  const double m = *std::max_element(z, z + classes);
  std::vector<double> p(static_cast<size_t>(classes));
  double sum = 0;
  for (int64_t c = 0; c < classes; ++c) sum += p[size_t(c)] = std::exp(double(z[c]) - m);
  for (double& v : p) v /= sum;
  return p;
}

double softmax_cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels, Tensor* dlogits) {
  const int64_t n = logits.dim(0), classes = logits.dim(1);
  if (int64_t(labels.size()) != n) fail("cross_entropy: {} labels for {} rows of logits", labels.size(), n);
  if (dlogits) *dlogits = Tensor(DType::F32, {n, classes});
  double loss = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t y = labels[size_t(i)];
    if (y < 0 || y >= classes) fail("cross_entropy: label {} outside the {} classes", y, classes);
    const std::vector<double> p = softmax_row(logits.f32() + i * classes, classes);
    loss -= std::log(std::max(p[size_t(y)], 1e-300));
    if (dlogits)
      for (int64_t c = 0; c < classes; ++c)
        dlogits->f32()[i * classes + c] = float((p[size_t(c)] - (c == y ? 1.0 : 0.0)) / double(n));
  }
  return loss / double(n);
}

}  // namespace lora::vision
