#pragma once
// Inference forward pass of the Llama-family decoder with a key/value cache.
//
//   x = embed(tokens)
//   for each layer:  h = x + Wo · attn(rope(Wq·n), rope(Wk·n), Wv·n),  n = rmsnorm(x)
//                    x = h + Wdown · (silu(Wgate·m) ⊙ Wup·m),          m = rmsnorm(h)
//   logits = lm_head · rmsnorm(x)
//
// B sequences of equal length T are processed together (batched prefill); later calls with T = 1
// continue each sequence from its cached positions (decoding).
//
// Adapters (LoRA, several at once) attach with set_adapters(): each linear then adds their part to the
// base output. The base weights are only read; with no adapter active the base code path runs alone.
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "kernels/rope.h"
#include "model/forward_adapters.h"
#include "model/model.h"

namespace lora {

class Transformer {
 public:
  Transformer(const Model& model, int64_t max_batch, int64_t max_seq);

  // tokens[b*T + t]: token t of sequence b, placed at position n_past() + t. Returns logits
  // [B*T, vocab] when all_logits, else [B, vocab] for each sequence's last token.
  const Tensor& forward(const int32_t* tokens, int64_t B, int64_t T, bool all_logits = true);

  // Not owned; null detaches. Must have been built for this model. Changing the active adapters
  // invalidates the cached keys/values: reset() before reusing the session.
  void set_adapters(const ForwardAdapters* adapters);
  const ForwardAdapters* adapters() const { return adapters_; }

  void reset() { n_past_ = 0; }
  int64_t n_past() const { return n_past_; }
  int64_t max_seq() const { return max_seq_; }
  const Model& model() const { return model_; }

 private:
  void ensure_buffers(int64_t rows, int64_t logit_rows);

  const Model& model_;
  const ForwardAdapters* adapters_ = nullptr;
  int64_t max_batch_, max_seq_;
  int64_t n_past_ = 0;
  RopeTable rope_;
  std::vector<Tensor> key_cache_, value_cache_;  // per layer [max_batch, max_seq, kv_dim]
  // activations, sized for the largest B*T seen
  Tensor x_, xb_, q_, k_, v_, att_, gate_, up_, logits_;
  std::vector<int32_t> positions_;
};

}  // namespace lora
