#pragma once
#include <cstdint>

namespace lora {

// -log softmax(logits)[target] for one row of `vocab` logits, by log-sum-exp in double.
double token_nll(const float* logits, int64_t vocab, int32_t target);

}  // namespace lora
