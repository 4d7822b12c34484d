#pragma once
// Picks the next token from a row of logits: greedy when temperature is 0, otherwise softmax at the
// temperature, restricted to the top_k most likely tokens and to the smallest set whose probability
// reaches top_p, then drawn with the seeded generator.
#include <cstdint>
#include <random>
#include <vector>

namespace lora {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;      // <= 0: no limit
  float top_p = 0.95f; // >= 1: no limit
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  int32_t sample(const float* logits, int64_t vocab);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

int32_t argmax(const float* logits, int64_t vocab);

}  // namespace lora
