#include "model/transformer.h"

#include <cstring>

#include "core/error.h"
#include "core/matmul.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/rmsnorm.h"
#include "kernels/swiglu.h"

namespace lora {

Transformer::Transformer(const Model& model, int64_t max_batch, int64_t max_seq)
    : model_(model), max_batch_(max_batch), max_seq_(max_seq), rope_(model.config, max_seq) {
  const ModelConfig& c = model.config;
  if (max_batch < 1 || max_seq < 1) fail("Transformer: batch and sequence length must be positive");
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    key_cache_.emplace_back(DType::F32, std::vector<int64_t>{max_batch, max_seq, c.kv_dim()});
    value_cache_.emplace_back(DType::F32, std::vector<int64_t>{max_batch, max_seq, c.kv_dim()});
  }
}

void Transformer::set_adapters(const ForwardAdapters* adapters) {
  if (adapters && &adapters->base() != &model_) fail("Transformer: the adapters were loaded for another model");
  adapters_ = adapters;
}

void Transformer::ensure_buffers(int64_t rows, int64_t logit_rows) {
  const ModelConfig& c = model_.config;
  if (x_.empty() || x_.dim(0) < rows) {
    x_ = Tensor(DType::F32, {rows, c.hidden_size});
    xb_ = Tensor(DType::F32, {rows, c.hidden_size});
    q_ = Tensor(DType::F32, {rows, c.q_dim()});
    k_ = Tensor(DType::F32, {rows, c.kv_dim()});
    v_ = Tensor(DType::F32, {rows, c.kv_dim()});
    att_ = Tensor(DType::F32, {rows, c.q_dim()});
    gate_ = Tensor(DType::F32, {rows, c.intermediate_size});
    up_ = Tensor(DType::F32, {rows, c.intermediate_size});
  }
  if (logits_.empty() || logits_.dim(0) != logit_rows) logits_ = Tensor(DType::F32, {logit_rows, c.vocab_size});
}

const Tensor& Transformer::forward(const int32_t* tokens, int64_t B, int64_t T, bool all_logits) {
  const ModelConfig& c = model_.config;
  const ModelWeights& w = model_.weights;
  if (B > max_batch_) fail("batch of {} exceeds the session's maximum of {}", B, max_batch_);
  if (n_past_ + T > max_seq_)
    fail("sequence would reach {} tokens, beyond the context of {}", n_past_ + T, max_seq_);

  const int64_t rows = B * T;
  ensure_buffers(rows, all_logits ? rows : B);
  // Views of exactly `rows` rows over the (possibly larger) buffers.
  Tensor x = x_.slice_rows(0, rows), xb = xb_.slice_rows(0, rows), q = q_.slice_rows(0, rows),
         k = k_.slice_rows(0, rows), v = v_.slice_rows(0, rows), att = att_.slice_rows(0, rows),
         gate = gate_.slice_rows(0, rows), up = up_.slice_rows(0, rows);

  positions_.resize(size_t(rows));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) positions_[b * T + t] = int32_t(n_past_ + t);

  const AttentionShape shape{c.num_attention_heads, c.num_key_value_heads, c.head_dim};
  const int64_t hidden = c.hidden_size, kv_dim = c.kv_dim();
  // With adapters active, each linear's base output gets their part added (ad is null otherwise,
  // and the base path below runs untouched).
  const ForwardAdapters* ad = adapters_ && adapters_->active() ? adapters_ : nullptr;
  const Tensor* embedding = ad && ad->embedding_weight() ? ad->embedding_weight() : &w.tok_embeddings;
  const Tensor* lm_head = ad && ad->lm_head_weight() ? ad->lm_head_weight() : &w.lm_head;

  embedding_forward(*embedding, tokens, rows, x.f32());
  if (ad) ad->add_embedding(tokens, rows, x);

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = w.layers[l];

    // attention block
    rmsnorm_forward(x.f32(), lw.attn_norm.f32(), xb.f32(), rows, hidden, c.rms_norm_eps);
    linear(xb, lw.wq, &lw.bq, q);
    linear(xb, lw.wk, &lw.bk, k);
    linear(xb, lw.wv, &lw.bv, v);
    if (ad) {
      ad->add_linear(l, LinearSite::Q, xb, q);
      ad->add_linear(l, LinearSite::K, xb, k);
      ad->add_linear(l, LinearSite::V, xb, v);
    }
    rope_forward(q.f32(), positions_.data(), rows, c.num_attention_heads, c.head_dim, rope_);
    rope_forward(k.f32(), positions_.data(), rows, c.num_key_value_heads, c.head_dim, rope_);
    for (int64_t b = 0; b < B; ++b) {
      float* kc = key_cache_[l].f32() + b * max_seq_ * kv_dim;
      float* vc = value_cache_[l].f32() + b * max_seq_ * kv_dim;
      std::memcpy(kc + n_past_ * kv_dim, k.f32() + b * T * kv_dim, size_t(T * kv_dim) * sizeof(float));
      std::memcpy(vc + n_past_ * kv_dim, v.f32() + b * T * kv_dim, size_t(T * kv_dim) * sizeof(float));
    }
    attention_forward(q.f32(), key_cache_[l].f32(), value_cache_[l].f32(), att.f32(), T, n_past_, shape, nullptr, B,
                      max_seq_);
    // residual: x += Wo · att (beta = 1 accumulates into x)
    matmul(mat(att), false, mat(lw.wo), true, mut_mat(x), 1.0f, 1.0f);
    if (ad) ad->add_linear(l, LinearSite::O, att, x);

    // MLP block
    rmsnorm_forward(x.f32(), lw.ffn_norm.f32(), xb.f32(), rows, hidden, c.rms_norm_eps);
    linear(xb, lw.w_gate, nullptr, gate);
    linear(xb, lw.w_up, nullptr, up);
    if (ad) {
      ad->add_linear(l, LinearSite::Gate, xb, gate);
      ad->add_linear(l, LinearSite::Up, xb, up);
    }
    swiglu_forward(gate.f32(), up.f32(), gate.f32(), gate.numel());
    matmul(mat(gate), false, mat(lw.w_down), true, mut_mat(x), 1.0f, 1.0f);
    if (ad) ad->add_linear(l, LinearSite::Down, gate, x);
  }

  if (all_logits) {
    rmsnorm_forward(x.f32(), w.norm.f32(), xb.f32(), rows, hidden, c.rms_norm_eps);
    linear(xb, *lm_head, nullptr, logits_);
    if (ad) ad->add_linear(0, LinearSite::Head, xb, logits_);
  } else {
    for (int64_t b = 0; b < B; ++b)
      rmsnorm_forward(x.f32() + (b * T + T - 1) * hidden, w.norm.f32(), xb.f32() + b * hidden, 1, hidden,
                      c.rms_norm_eps);
    Tensor last = xb.slice_rows(0, B);
    linear(last, *lm_head, nullptr, logits_);
    if (ad) ad->add_linear(0, LinearSite::Head, last, logits_);
  }
  n_past_ += T;
  return logits_;
}

}  // namespace lora
