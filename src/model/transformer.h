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
//
// forward_steps() is the general form a server batches with (continuous batching, S-LoRA/Punica style):
// each sequence has its own cache slot, position, token count (a prompt chunk or one decoded token) and
// adapters. Every linear runs the base GEMM once over all rows, then each run of rows that shares an
// adapter adds that adapter's low-rank product on its own rows:
//
//   Y = X Wᵀ  (all rows)          Y[rows of s] += ΔW_s X[rows of s]   (per adapter s)
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

  // One sequence's part of a batched step: n_tokens tokens continuing the sequence cached in `slot`,
  // at positions n_past .. n_past + n_tokens − 1, through `adapters` (null or inactive: the base model).
  struct SequenceStep {
    int64_t slot = 0;
    int64_t n_past = 0;
    const int32_t* tokens = nullptr;
    int64_t n_tokens = 1;
    const ForwardAdapters* adapters = nullptr;
  };
  // Logits [steps.size(), vocab] of each step's last token. Slots must be distinct and below
  // max_batch; the session's own n_past() is neither used nor changed. Steps whose adapters are equal
  // and adjacent share their low-rank products, so callers order steps by adapter.
  const Tensor& forward_steps(const std::vector<SequenceStep>& steps);

  // Not owned; null detaches. Must have been built for this model. Changing the active adapters
  // invalidates the cached keys/values: reset() before reusing the session.
  void set_adapters(const ForwardAdapters* adapters);
  const ForwardAdapters* adapters() const { return adapters_; }

  void reset() { n_past_ = 0; }
  int64_t n_past() const { return n_past_; }
  int64_t max_seq() const { return max_seq_; }
  int64_t max_batch() const { return max_batch_; }
  const Model& model() const { return model_; }

 private:
  void ensure_buffers(int64_t rows, int64_t logit_rows);
  // all_logits: a row of logits for every token, else for the last token of each step.
  const Tensor& run(const std::vector<SequenceStep>& steps, bool all_logits);

  const Model& model_;
  const ForwardAdapters* adapters_ = nullptr;
  int64_t max_batch_, max_seq_;
  int64_t n_past_ = 0;
  RopeTable rope_;
  RopeTable rope_local_;  // the local (sliding-window) layers' RoPE (Gemma 3), empty otherwise
  std::vector<Tensor> key_cache_, value_cache_;  // per layer [max_batch, max_seq, kv_dim]
  // activations, sized for the largest B*T seen
  Tensor x_, xb_, q_, k_, v_, att_, gate_, up_, logits_;
  std::vector<int32_t> positions_, tokens_;
  std::vector<int64_t> first_row_;  // per step, its first row; one past the last row at the end
};

}  // namespace lora
