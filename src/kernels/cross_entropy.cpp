#include "kernels/cross_entropy.h"

#include <cmath>

namespace lora {

double token_nll(const float* logits, int64_t vocab, int32_t target) {
  float max_logit = logits[0];
  for (int64_t i = 1; i < vocab; ++i) max_logit = std::max(max_logit, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - max_logit);
  return std::log(sum) + max_logit - double(logits[target]);
}

}  // namespace lora
