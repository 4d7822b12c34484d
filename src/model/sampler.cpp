#include "model/sampler.h"

#include <algorithm>
#include <cmath>

namespace lora {

int32_t argmax(const float* logits, int64_t vocab) {
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  return int32_t(best);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

int32_t Sampler::sample(const float* logits, int64_t vocab) {
  if (params_.temperature <= 0.0f) return argmax(logits, vocab);

  candidates_.resize(size_t(vocab));
  for (int64_t i = 0; i < vocab; ++i) candidates_[i] = {logits[i], int32_t(i)};
  const auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t n = candidates_.size();
  if (params_.top_k > 0 && size_t(params_.top_k) < n) {
    n = size_t(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + long(n), candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }

  // softmax over the kept candidates at the temperature
  const float max_logit = candidates_[0].first;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    candidates_[i].first = std::exp((candidates_[i].first - max_logit) / params_.temperature);
    sum += candidates_[i].first;
  }
  // nucleus: the smallest prefix whose mass reaches top_p
  if (params_.top_p < 1.0f) {
    double mass = 0;
    for (size_t i = 0; i < n; ++i) {
      mass += candidates_[i].first / sum;
      if (mass >= params_.top_p) {
        n = i + 1;
        break;
      }
    }
    sum = 0;
    for (size_t i = 0; i < n; ++i) sum += candidates_[i].first;
  }
  std::uniform_real_distribution<double> uniform(0.0, sum);
  const double r = uniform(rng_);
  double acc = 0;
  for (size_t i = 0; i < n; ++i) {
    acc += candidates_[i].first;
    if (r < acc) return candidates_[i].second;
  }
  return candidates_[n - 1].second;
}

}  // namespace lora
