#pragma once
// Causal scaled-dot-product attention with grouped-query heads, forward and backward, blocked the way
// FlashAttention is (Dao et al. 2022, and FlashAttention-2's loop order for the backward):
//
//   forward, per (sequence, head, block of 64 queries):
//     for each block of 64 visible keys:  S = Q Kᵀ / √d;  m' = max(m, rowmax S);  P = e^(S − m')
//                                          l = l·e^(m − m') + rowsum P;  O = O·e^(m − m') + P V;  m = m'
//     O /= l   (m and 1/l of every query are kept for the backward)
//   backward, with D_t = do_t · o_t, per (sequence, kv head, block of 64 keys), over the query blocks and the
//   query heads that read it:
//     P = e^(Q Kᵀ/√d − m) / l;  dV += Pᵀ dO;  dP = dO Vᵀ;  dS = P ⊙ (dP − D) / √d;  dK += dSᵀ Q;  dQ += dS K
//
// No [T x T] matrix exists: scores live one 64 x 64 tile at a time in L1, and the backward recomputes them
// from the row maxima and sums the forward saved. K and V are read in place for every query head of their group
// (GQA without copies). Work is spread over sequences x heads x blocks, largest blocks first.
#include <cstdint>

#include "core/dtype.h"

namespace lora {

struct AttentionShape {
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;
  // Sliding-window attention (Gemma's and Mistral's local layers): a query at position p sees the keys
  // p − window < j <= p only; 0 for plain causal attention (every key up to p). Key blocks wholly outside
  // every window of a query block are skipped, forward and backward.
  int64_t window = 0;
  // Soft-capping (Gemma 2's attn_logit_softcapping): every scaled score s becomes softcap · tanh(s / softcap)
  // before the softmax; 0 for none.
  float softcap = 0.0f;
  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
};

// `batch` sequences: q and out are [batch·T, q_dim], the queries of each sequence at positions
// pos0 .. pos0+T-1; keys/values hold, per sequence, every position up to its last query, [pos0+T, kv_dim],
// consecutive sequences kv_stride rows apart (0: pos0 + T, i.e. packed). Query head h reads kv head
// h / (n_heads / n_kv_heads). out[t] = softmax(q_t · K[0..pos0+t]ᵀ / √head_dim) · V (keys from
// pos0 + t − window + 1 on with a window).
// stats, when given, receives what the backward needs, [2, batch, n_heads, T]: the largest scaled score m of
// each query, then 1/l with l = Σ_j e^(s_j − m). (Kept apart rather than as log-sum-exp m + log l, whose
// rounding at |m + log l| would make the recomputed probabilities several times less exact.)
// E, the element type of q, keys, values and out, is float or bf16 (then the tiles are converted to f32 as
// they are loaded: the products and the softmax run in f32 either way).
template <typename E>
void attention_forward(const E* q, const E* keys, const E* values, E* out, int64_t T, int64_t pos0,
                       const AttentionShape& shape, float* stats = nullptr, int64_t batch = 1, int64_t kv_stride = 0);

// Gradients of attention_forward (pos0 = 0, keys and values packed) from its output `out` and `stats`:
//   dv_j = Σ_t p_tj do_t,  ds_tj = p_tj (do_t·v_j − do_t·o_t),  dq_t = Σ_j ds_tj k_j / √d,  dk_j = Σ_t ds_tj q_t / √d,
// summed over the query heads that share a kv head. dq, dk, dv are overwritten.
template <typename E>
void attention_backward(const float* dout, const E* q, const E* keys, const E* values, const E* out,
                        const float* stats, float* dq, float* dk, float* dv, int64_t T, const AttentionShape& shape,
                        int64_t batch = 1);

// The same, one query row at a time with its whole score vector (attention_reference.cpp): for tests.
void attention_forward_reference(const float* q, const float* keys, const float* values, float* out, int64_t T,
                                 int64_t pos0, const AttentionShape& shape);
void attention_backward_reference(const float* dout, const float* q, const float* keys, const float* values, float* dq,
                                  float* dk, float* dv, int64_t T, const AttentionShape& shape);

// FLOPs of one causal sequence of T positions (pos0 = 0), for profiles and benchmarks: the forward is two
// products (q·kᵀ, p·v) over the visible pairs per head (T(T+1)/2 without a window, W(W+1)/2 + (T−W)·W with a
// window W < T); the backward recomputes q·kᵀ and forms dv, dp, dq and dk: five.
inline double attention_visible_pairs(int64_t T, int64_t window) {
  if (window <= 0 || window >= T) return double(T) * double(T + 1) / 2.0;
  return double(window) * double(window + 1) / 2.0 + double(T - window) * double(window);
}
inline double attention_forward_flops(int64_t T, const AttentionShape& s) {
  return 2.0 * 2.0 * attention_visible_pairs(T, s.window) * double(s.head_dim) * double(s.n_heads);
}
inline double attention_backward_flops(int64_t T, const AttentionShape& s) { return 2.5 * attention_forward_flops(T, s); }

}  // namespace lora
