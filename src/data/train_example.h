#pragma once
// What the trainer consumes: one token sequence with its labels.
#include <cstdint>
#include <vector>

#include "kernels/cross_entropy.h"

namespace lora {

// Hugging Face convention: labels aligned with input_ids, kIgnoreIndex where a token does not count
// (prompt, padding); the loss at position t predicts labels[t + 1].
struct TrainExample {
  std::vector<int32_t> input_ids, labels;
};

}  // namespace lora
