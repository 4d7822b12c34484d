#include "model/transformer.h"

#include <cstring>

#include "core/error.h"
#include "core/matmul.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/geglu.h"
#include "kernels/rmsnorm.h"
#include "kernels/swiglu.h"

namespace lora {

Transformer::Transformer(const Model& model, int64_t max_batch, int64_t max_seq)
    : model_(model), max_batch_(max_batch), max_seq_(max_seq), rope_(model.config, max_seq) {
  const ModelConfig& c = model.config;
  if (max_batch < 1 || max_seq < 1) fail("Transformer: batch and sequence length must be positive");
  if (c.has_sliding_layers()) rope_local_ = RopeTable(c.local_rope_config(), max_seq);
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
  if (B > max_batch_) fail("batch of {} exceeds the session's maximum of {}", B, max_batch_);
  if (n_past_ + T > max_seq_)
    fail("sequence would reach {} tokens, beyond the context of {}", n_past_ + T, max_seq_);
  std::vector<SequenceStep> steps(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) steps[size_t(b)] = {b, n_past_, tokens + b * T, T, adapters_};
  const Tensor& logits = run(steps, all_logits);
  n_past_ += T;
  return logits;
}

const Tensor& Transformer::forward_steps(const std::vector<SequenceStep>& steps) {
  if (steps.empty()) fail("forward_steps: no sequence to run");
  std::vector<bool> used(size_t(max_batch_), false);
  for (const SequenceStep& s : steps) {
    if (s.slot < 0 || s.slot >= max_batch_) fail("slot {} is outside the session's {} slots", s.slot, max_batch_);
    if (used[size_t(s.slot)]) fail("slot {} appears twice in one step", s.slot);
    used[size_t(s.slot)] = true;
    if (s.n_tokens < 1 || s.n_past < 0) fail("slot {}: a step needs at least one token at a position >= 0", s.slot);
    if (s.n_past + s.n_tokens > max_seq_)
      fail("slot {}: sequence would reach {} tokens, beyond the context of {}", s.slot, s.n_past + s.n_tokens, max_seq_);
    if (s.adapters && &s.adapters->base() != &model_) fail("Transformer: the adapters were loaded for another model");
  }
  return run(steps, false);
}

namespace {

// Adjacent steps that go through the same adapters (null: the base model), as rows [row_begin, row_end)
// of the activations and steps [step_begin, step_end).
struct AdapterRun {
  const ForwardAdapters* adapters;
  int64_t row_begin, row_end, step_begin, step_end;
};

}  // namespace

const Tensor& Transformer::run(const std::vector<SequenceStep>& steps, bool all_logits) {
  const ModelConfig& c = model_.config;
  const ModelWeights& w = model_.weights;
  const int64_t n_steps = int64_t(steps.size());

  first_row_.assign(size_t(n_steps + 1), 0);
  for (int64_t s = 0; s < n_steps; ++s) first_row_[size_t(s + 1)] = first_row_[size_t(s)] + steps[size_t(s)].n_tokens;
  const int64_t rows = first_row_.back();
  tokens_.resize(size_t(rows));
  positions_.resize(size_t(rows));
  std::vector<AdapterRun> runs;
  for (int64_t s = 0; s < n_steps; ++s) {
    const SequenceStep& st = steps[size_t(s)];
    const int64_t r0 = first_row_[size_t(s)];
    std::memcpy(tokens_.data() + r0, st.tokens, size_t(st.n_tokens) * sizeof(int32_t));
    for (int64_t t = 0; t < st.n_tokens; ++t) positions_[size_t(r0 + t)] = int32_t(st.n_past + t);
    // With adapters active, each linear's base output gets their part added (null otherwise, and the
    // base path runs untouched).
    const ForwardAdapters* ad = st.adapters && st.adapters->active() ? st.adapters : nullptr;
    if (runs.empty() || runs.back().adapters != ad) runs.push_back({ad, r0, r0, s, s});
    runs.back().row_end = r0 + st.n_tokens;
    runs.back().step_end = s + 1;
  }

  ensure_buffers(rows, all_logits ? rows : n_steps);
  // Views of exactly `rows` rows over the (possibly larger) buffers.
  Tensor x = x_.slice_rows(0, rows), xb = xb_.slice_rows(0, rows), q = q_.slice_rows(0, rows),
         k = k_.slice_rows(0, rows), v = v_.slice_rows(0, rows), att = att_.slice_rows(0, rows),
         gate = gate_.slice_rows(0, rows), up = up_.slice_rows(0, rows);
  // Each run's adapters add their part to their own rows of a linear's output. A decoding batch has a
  // row or two per adapter, whose thin products are too small to share out inside one; distinct adapters
  // are spread over the threads instead (their rows are disjoint, and each adapter object is used by one
  // thread only: an adapter that appears in two runs keeps the runs on one thread).
  std::vector<const AdapterRun*> adapted;
  for (const AdapterRun& r : runs)
    if (r.adapters) adapted.push_back(&r);
  bool distinct = true;
  for (size_t i = 0; i < adapted.size() && distinct; ++i)
    for (size_t j = 0; j < i; ++j) distinct &= adapted[i]->adapters != adapted[j]->adapters;
  const bool spread = adapted.size() >= 2 && distinct;
  const auto add_adapters = [&](int64_t l, LinearSite site, const Tensor& in, Tensor& out) {
    const auto add_run = [&](const AdapterRun& r) {
      Tensor y = out.slice_rows(r.row_begin, r.row_end);
      r.adapters->add_linear(l, site, in.slice_rows(r.row_begin, r.row_end), y);
    };
    if (!spread) {  // (not an inactive parallel region: the GEMMs inside would lose the thread pool)
      for (const AdapterRun* r : adapted) add_run(*r);
      return;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < adapted.size(); ++i) add_run(*adapted[i]);
  };

  const int64_t hidden = c.hidden_size, kv_dim = c.kv_dim();

  for (const AdapterRun& r : runs) {
    const Tensor* embedding = r.adapters && r.adapters->embedding_weight() ? r.adapters->embedding_weight() : &w.tok_embeddings;
    Tensor xr = x.slice_rows(r.row_begin, r.row_end);
    embedding_forward(*embedding, tokens_.data() + r.row_begin, r.row_end - r.row_begin, xr.f32());
    // Gemma scales the embedding module's output; a PEFT embedding LoRA adds to it unscaled.
    if (c.gemma_block) scale_in_place(xr.f32(), c.embedding_scale(embedding->dtype() == DType::BF16), xr.numel());
    if (r.adapters) r.adapters->add_embedding(tokens_.data() + r.row_begin, r.row_end - r.row_begin, xr);
  }

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = w.layers[l];

    // attention block
    rmsnorm_forward(x.f32(), lw.attn_norm.f32(), xb.f32(), rows, hidden, c.rms_norm_eps);
    linear(xb, lw.wq, &lw.bq, q);
    linear(xb, lw.wk, &lw.bk, k);
    linear(xb, lw.wv, &lw.bv, v);
    add_adapters(l, LinearSite::Q, xb, q);
    add_adapters(l, LinearSite::K, xb, k);
    add_adapters(l, LinearSite::V, xb, v);
    if (c.qk_norm) {  // Qwen3: every head of q and k normalized on its own (rows of head_dim), in place
      rmsnorm_forward(q.f32(), lw.q_norm.f32(), q.f32(), rows * c.num_attention_heads, c.head_dim, c.rms_norm_eps);
      rmsnorm_forward(k.f32(), lw.k_norm.f32(), k.f32(), rows * c.num_key_value_heads, c.head_dim, c.rms_norm_eps);
    }
    if (c.uses_rope(l)) {  // (SmolLM3's NoPE layers attend without positions)
      const RopeTable& table = c.is_sliding(l) ? rope_local_ : rope_;
      rope_forward(q.f32(), positions_.data(), rows, c.num_attention_heads, c.head_dim, table);
      rope_forward(k.f32(), positions_.data(), rows, c.num_key_value_heads, c.head_dim, table);
    }
    if (c.query_scale() != 1.0f) scale_in_place(q.f32(), c.query_scale(), q.numel());  // query_pre_attn_scalar
    const AttentionShape shape{c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.attention_window(l),
                               c.attn_logit_softcapping};
    for (int64_t s = 0; s < n_steps; ++s) {
      const SequenceStep& st = steps[size_t(s)];
      const int64_t r0 = first_row_[size_t(s)];
      float* kc = key_cache_[l].f32() + (st.slot * max_seq_ + st.n_past) * kv_dim;
      float* vc = value_cache_[l].f32() + (st.slot * max_seq_ + st.n_past) * kv_dim;
      std::memcpy(kc, k.f32() + r0 * kv_dim, size_t(st.n_tokens * kv_dim) * sizeof(float));
      std::memcpy(vc, v.f32() + r0 * kv_dim, size_t(st.n_tokens * kv_dim) * sizeof(float));
    }
    // Steps in consecutive slots with equal positions and lengths (a batched prefill, or decoding
    // sequences that started together) make one call; the others one call each.
    for (int64_t s = 0; s < n_steps;) {
      const SequenceStep& st = steps[size_t(s)];
      int64_t e = s + 1;
      while (e < n_steps && steps[size_t(e)].slot == steps[size_t(e - 1)].slot + 1 &&
             steps[size_t(e)].n_past == st.n_past && steps[size_t(e)].n_tokens == st.n_tokens)
        ++e;
      const int64_t r0 = first_row_[size_t(s)];
      attention_forward(q.f32() + r0 * c.q_dim(), key_cache_[l].f32() + st.slot * max_seq_ * kv_dim,
                        value_cache_[l].f32() + st.slot * max_seq_ * kv_dim, att.f32() + r0 * c.q_dim(), st.n_tokens,
                        st.n_past, shape, nullptr, e - s, max_seq_);
      s = e;
    }
    if (!c.gemma_block) {
      // residual: x += Wo · att (beta = 1 accumulates into x)
      matmul(mat(att), false, mat(lw.wo), true, mut_mat(x), 1.0f, 1.0f);
      add_adapters(l, LinearSite::O, att, x);
    } else {  // x += post_attn_norm(Wo · att), the block's input norm no longer needed in xb
      linear(att, lw.wo, nullptr, xb);
      add_adapters(l, LinearSite::O, att, xb);
      rmsnorm_forward(xb.f32(), lw.post_attn_norm.f32(), xb.f32(), rows, hidden, c.rms_norm_eps);
      add_into(x.f32(), xb.f32(), x.numel());
    }

    // MLP block
    rmsnorm_forward(x.f32(), lw.ffn_norm.f32(), xb.f32(), rows, hidden, c.rms_norm_eps);
    linear(xb, lw.w_gate, nullptr, gate);
    linear(xb, lw.w_up, nullptr, up);
    add_adapters(l, LinearSite::Gate, xb, gate);
    add_adapters(l, LinearSite::Up, xb, up);
    if (!c.gemma_block) {
      swiglu_forward(gate.f32(), up.f32(), gate.f32(), gate.numel());
      matmul(mat(gate), false, mat(lw.w_down), true, mut_mat(x), 1.0f, 1.0f);
      add_adapters(l, LinearSite::Down, gate, x);
    } else {  // x += post_ffn_norm(Wd · geglu(gate, up))
      geglu_forward(gate.f32(), up.f32(), gate.f32(), gate.numel());
      linear(gate, lw.w_down, nullptr, xb);
      add_adapters(l, LinearSite::Down, gate, xb);
      rmsnorm_forward(xb.f32(), lw.post_ffn_norm.f32(), xb.f32(), rows, hidden, c.rms_norm_eps);
      add_into(x.f32(), xb.f32(), x.numel());
    }
  }

  // The head reads every row, or each step's last; `runs` then index logit rows by step.
  Tensor head_in;
  if (all_logits) {
    rmsnorm_forward(x.f32(), w.norm.f32(), xb.f32(), rows, hidden, c.rms_norm_eps);
    head_in = xb;
  } else {
    for (int64_t s = 0; s < n_steps; ++s)
      rmsnorm_forward(x.f32() + (first_row_[size_t(s + 1)] - 1) * hidden, w.norm.f32(), xb.f32() + s * hidden, 1,
                      hidden, c.rms_norm_eps);
    head_in = xb.slice_rows(0, n_steps);
    for (AdapterRun& r : runs) r.row_begin = r.step_begin, r.row_end = r.step_end;
  }
  bool replaced_head = false;
  for (const AdapterRun& r : runs) replaced_head |= r.adapters && r.adapters->lm_head_weight();
  if (!replaced_head) {
    linear(head_in, w.lm_head, nullptr, logits_);
  } else {  // modules_to_save: each run through its own head
    for (const AdapterRun& r : runs) {
      const Tensor* head = r.adapters && r.adapters->lm_head_weight() ? r.adapters->lm_head_weight() : &w.lm_head;
      Tensor out = logits_.slice_rows(r.row_begin, r.row_end);
      linear(head_in.slice_rows(r.row_begin, r.row_end), *head, nullptr, out);
    }
  }
  add_adapters(0, LinearSite::Head, head_in, logits_);
  softcap_logits(logits_.f32(), logits_.numel(), c.final_logit_softcapping);  // (Gemma 2)
  return logits_;
}

}  // namespace lora
