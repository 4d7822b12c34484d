#pragma once
// Cross-entropy of next-token prediction, fused with the lm_head projection so that the
// [tokens x vocab] logits exist only `chunk` rows at a time (151k-token vocabularies would otherwise
// need gigabytes).
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace lora {

constexpr int32_t kIgnoreIndex = -100;  // label of tokens that do not count (prompt, padding)

// -log softmax(logits)[target] for one row of `vocab` logits, by log-sum-exp in double.
double token_nll(const float* logits, int64_t vocab, int32_t target);

struct CrossEntropyResult {
  double loss_sum = 0;  // Σ NLL over counted tokens
  int64_t count = 0;    // tokens whose target is not kIgnoreIndex
};

// A low-rank term added to the logits, logits += scale · u · Bᵀ, for a LoRA on the lm_head: u = A x
// [n, r] is computed by the caller (who also owns dropout), so the kernel needs only B and returns
// du = scale · dlogits · B for the caller to finish dA and dx.
struct LowRankLogits {
  const float* u = nullptr;   // [n, r]
  const Tensor* b = nullptr;  // [vocab, r], f32
  float scale = 1.0f;
  float* du = nullptr;        // [n, r], overwritten (backward only)
  float* db = nullptr;        // [vocab, r], accumulated (backward only)
};

// logits = h · lm_headᵀ (+ low-rank term) for h [n, dim]; loss over rows whose target != kIgnoreIndex.
// If dh is given, the backward runs in the same pass with dloss/dlogits = grad_scale · (softmax − onehot):
// dh = dlogits · lm_head (overwritten, zero on ignored rows), dlm_head += dlogitsᵀ · h (if not null).
// dlogits is stored in bf16 when lm_head is bf16 or quantized (its GEMMs would round it anyway), else f32.
// `workspace`, if given, holds the chunk's logits and is kept (grown only) for the next call. `softcap` > 0 caps
// the logits first (Gemma 2's final_logit_softcapping: l <- softcap · tanh(l / softcap)), the gradient through it.
CrossEntropyResult lm_head_cross_entropy(const float* h, const Tensor& lm_head, const int32_t* targets, int64_t n,
                                         int64_t chunk, float grad_scale = 0.0f, float* dh = nullptr,
                                         float* dlm_head = nullptr, const LowRankLogits* low_rank = nullptr,
                                         std::vector<float>* workspace = nullptr, float softcap = 0.0f);

// Soft-capping of n logits in place, l <- softcap · tanh(l / softcap) (nothing when softcap <= 0): what the
// inference pass applies to the logits of a Gemma 2 model, as the loss above does.
void softcap_logits(float* logits, int64_t n, float softcap);

}  // namespace lora
