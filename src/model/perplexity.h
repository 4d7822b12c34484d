#pragma once
#include <cstdint>
#include <vector>

#include "model/forward_adapters.h"
#include "model/model.h"

namespace lora {

struct PerplexityResult {
  int64_t tokens = 0;  // predicted tokens
  double nll = 0;      // mean negative log-likelihood (nats)
  double perplexity = 0;
  double seconds = 0;
};

// ids are cut into non-overlapping windows of ctx tokens; window w predicts its tokens 1..n-1 from the
// ones before them (a last window shorter than 2 tokens predicts nothing). Full windows run `batch`
// at a time. `adapters` (may be null) are applied on the fly.
PerplexityResult perplexity(const Model& model, const std::vector<int32_t>& ids, int64_t ctx, int64_t batch,
                            const ForwardAdapters* adapters = nullptr);

}  // namespace lora
