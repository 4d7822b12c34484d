#pragma once
// Causal scaled-dot-product attention with grouped-query heads over a key/value cache.
#include <cstdint>

namespace lora {

struct AttentionShape {
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
};

// q [T, n_heads*head_dim] holds queries at positions pos0 .. pos0+T-1; keys/values [pos0+T, kv_dim]
// hold every position up to the last query. Query head h reads kv head h / (n_heads / n_kv_heads).
// out[t] = softmax(q_t · K[0..pos0+t]ᵀ / sqrt(head_dim)) · V.
void attention_forward(const float* q, const float* keys, const float* values, float* out, int64_t T, int64_t pos0,
                       const AttentionShape& shape);

// Gradients of attention_forward over one sequence with pos0 = 0 (training: queries, keys and values
// are the same T positions). With p = softmax(s), s_j = q·k_j / sqrt(d), o = Σ p_j v_j:
//   dv_j = Σ_t p_tj do_t,  ds_tj = p_tj (do_t·v_j − Σ_i p_ti do_t·v_i),  dq_t = Σ_j ds_tj k_j / sqrt(d),
//   dk_j = Σ_t ds_tj q_t / sqrt(d), summed over the query heads that share a kv head.
// The probabilities are recomputed rather than stored. dq, dk, dv are overwritten.
void attention_backward(const float* dout, const float* q, const float* keys, const float* values, float* dq,
                        float* dk, float* dv, int64_t T, const AttentionShape& shape);

}  // namespace lora
