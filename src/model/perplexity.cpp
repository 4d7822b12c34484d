#include "model/perplexity.h"

#include <chrono>
#include <cmath>

#include "core/error.h"
#include "kernels/cross_entropy.h"
#include "model/transformer.h"

namespace lora {

PerplexityResult perplexity(const Model& model, const std::vector<int32_t>& ids, int64_t ctx, int64_t batch,
                            const ForwardAdapters* adapters) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t vocab = model.config.vocab_size;
  const int64_t n = int64_t(ids.size());
  if (ctx < 2) fail("perplexity: the window must hold at least 2 tokens");
  if (n < 2) fail("perplexity: the text has {} token(s); at least 2 are needed", n);

  const int64_t full = n / ctx, tail = n - full * ctx;
  Transformer model_full(model, std::max<int64_t>(1, std::min(batch, full)), ctx);
  model_full.set_adapters(adapters);
  double total = 0;
  int64_t count = 0;
  auto score = [&](const Tensor& logits, const int32_t* window, int64_t b, int64_t len, int64_t T) {
    for (int64_t t = 0; t + 1 < len; ++t) total += token_nll(logits.f32() + (b * T + t) * vocab, vocab, window[t + 1]);
    count += len - 1;
  };
  for (int64_t w = 0; w < full; w += batch) {
    const int64_t B = std::min(batch, full - w);
    model_full.reset();
    const Tensor& logits = model_full.forward(ids.data() + w * ctx, B, ctx, true);
    for (int64_t b = 0; b < B; ++b) score(logits, ids.data() + (w + b) * ctx, b, ctx, ctx);
  }
  if (tail >= 2) {
    Transformer model_tail(model, 1, tail);
    model_tail.set_adapters(adapters);
    const int32_t* window = ids.data() + full * ctx;
    score(model_tail.forward(window, 1, tail, true), window, 0, tail, tail);
  }
  PerplexityResult r;
  r.tokens = count;
  r.nll = total / double(count);
  r.perplexity = std::exp(r.nll);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace lora
