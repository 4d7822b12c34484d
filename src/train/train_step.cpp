// The training forward and backward passes of TrainableModel (construction is in trainable_model.cpp).
//
// forward, per block:  n = rmsnorm(x);  q,k,v = rope(Lq n), rope(Lk n), Lv n;  h = x + Lo attn(q,k,v)
//                      m = rmsnorm(h);  x' = h + Ld (silu(Lg m) ⊙ Lu m)
// (Qwen3: q = rope(headnorm(Lq n)), k likewise, each head normalized over its head_dim; SmolLM3's NoPE layers
//  leave out the rope.)
// Gemma 3:  h = x + rmsnorm(Lo attn(q,k,v));  x' = h + rmsnorm(Ld (gelu(Lg m) ⊙ Lu m)), q scaled by
//  √(head_dim / query_pre_attn_scalar) so that the kernels' 1/√head_dim becomes query_pre_attn_scalar^-1/2; its
//  local layers' RoPE has its own base. The backward runs dx through each post-norm's rmsnorm' first.
// backward, per block in reverse, with dx the gradient at the block output:
//   dact = Ldᵀ dx;  dgate, dup = swiglu'(dact);  dx += rmsnorm'(Lgᵀ dgate + Luᵀ dup)      (dx is now dh)
//   datt = Loᵀ dx;  dq, dk, dv = attn'(datt);  dx += rmsnorm'(Lqᵀ rope'(dq) + Lkᵀ rope'(dk) + Lvᵀ dv)
#include <cstring>
#include <optional>
#include <type_traits>

#include "core/error.h"
#include "core/matmul.h"
#include "core/parallel.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/geglu.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "train/activations.h"
#include "train/trainable_model.h"

namespace lora {

namespace {

void add_into(Tensor& dst, const Tensor& src) { lora::add_into(dst.f32(), src.f32(), dst.numel()); }

// A dropout stream per (step, block, projection): recomputation under gradient checkpointing draws
// exactly the masks the first forward drew.
std::mt19937_64 dropout_rng(uint64_t step_seed, int64_t layer, int proj) {
  std::seed_seq seq{uint32_t(step_seed), uint32_t(step_seed >> 32), uint32_t(layer), uint32_t(proj)};
  return std::mt19937_64(seq);
}

// FLOPs of one adapted linear over n rows: the base GEMM and the rank-r products, forward or backward
// (backward: the input gradient if wanted, the LoRA gradients always).
double linear_flops(const LinearSlot& s, int64_t n, bool backward, bool input_grad) {
  const MatView w = mat(s.weight);
  const double base = 2.0 * double(n) * double(w.rows) * double(w.cols);
  const double low_rank = s.lora ? 2.0 * double(n) * double(s.lora->r) * double(w.rows + w.cols) : 0.0;
  if (!backward) return base + low_rank;
  return (input_grad ? base : 0.0) + 2.0 * low_rank + (s.weight_grad.empty() ? 0.0 : base);
}

// Projections that read the same input, run side by side (core/parallel.h): timed as one phase when they
// are; run one after the other (small models), each linear times its own parts.
template <class F, class G>
void projections_side_by_side(Profiler* profiler, double flops, F&& f, G&& g) {
  std::optional<Profiler::Scope> t;
  if (runs_side_by_side(flops)) t.emplace(profiler, Phase::Projections, flops);
  run_side_by_side(flops, f, g);
}

template <typename E> E* data(Tensor& t) { return t.data_as<E>(); }
template <typename E> const E* data(const Tensor& t) { return t.data_as<E>(); }

}  // namespace

DType TrainableModel::storage_type(int64_t l) const {
  for (const LinearSlot& s : slots_[size_t(l)])
    if (s.weight.dtype() != DType::BF16 && !s.weight.quantized()) return DType::F32;
  return DType::BF16;
}

void TrainableModel::layer_forward(int64_t l, LayerActivations& a, int64_t B, int64_t T, bool training, uint64_t seed) {
  if (a.dtype == DType::BF16)
    layer_forward_as<bf16>(l, a, B, T, training, seed);
  else
    layer_forward_as<float>(l, a, B, T, training, seed);
}

void TrainableModel::layer_backward(int64_t l, LayerActivations& a, Tensor& dx, int64_t B, int64_t T) {
  if (a.dtype == DType::BF16)
    layer_backward_as<bf16>(l, a, dx, B, T);
  else
    layer_backward_as<float>(l, a, dx, B, T);
  sum_shared_a_gradients(l);
}

template <typename E>
void TrainableModel::layer_forward_as(int64_t l, LayerActivations& a, int64_t B, int64_t T, bool training,
                                      uint64_t seed) {
  constexpr bool f32 = std::is_same_v<E, float>;
  const ModelConfig& c = base_.config;
  const LayerWeights& w = weights_.layers[size_t(l)];
  auto& slots = slots_[size_t(l)];
  const int64_t n = B * T;
  const Tensor& x = residual_[size_t(l)];
  Tensor& x_out = residual_[size_t(l) + 1];
  // The GEMMs write f32; on an f32 block straight into the stored activations.
  if (!f32) forward_scratch_->allocate(c, n);
  ForwardScratch& fs = *forward_scratch_;
  Tensor &q32 = f32 ? a.q : fs.q, &k32 = f32 ? a.k : fs.k, &v32 = f32 ? a.v : fs.v;
  // With head norms the projections write the kept pre-norm q and k; the norms then write q32/k32.
  Tensor &q_proj = c.qk_norm ? a.q_pre : q32, &k_proj = c.qk_norm ? a.k_pre : k32;
  Tensor &gate32 = f32 ? a.gate : fs.gate, &up32 = f32 ? a.up : fs.up;
  auto lin = [&](Proj p, const Tensor& in, Tensor& out) {
    std::mt19937_64 rng = dropout_rng(seed, l, lora_a_holder(p, c));  // (the parts of a fused module: one mask)
    LinearParams lp = slots[p].params();
    lp.profiler = profiler;
    adapted_linear_forward(lp, in, out, &a.linear[p], training ? &rng : nullptr);
  };
  auto timed = [&](Phase phase, double flops = 0) { return Profiler::Scope(profiler, phase, flops); };

  {
    auto t = timed(Phase::RmsNorm);
    rmsnorm_forward(x.f32(), w.attn_norm.f32(), data<E>(a.xn_attn), n, c.hidden_size, c.rms_norm_eps, a.rstd_attn.f32());
  }
  // The projections that read the same input run side by side (q | k, v and gate | up): their thin LoRA
  // products gain nothing from a second thread, and two single-threaded GEMMs keep the cores busier than
  // one two-threaded GEMM after another.
  {
    const double flops = linear_flops(slots[kQ], n, false, false) + linear_flops(slots[kK], n, false, false) +
                         linear_flops(slots[kV], n, false, false);
    projections_side_by_side(profiler, flops, [&] { lin(kQ, a.xn_attn, q_proj); },
                             [&] {
                               lin(kK, a.xn_attn, k_proj);
                               lin(kV, a.xn_attn, v32);
                             });
  }
  if (c.qk_norm) {
    auto t = timed(Phase::RmsNorm);
    rmsnorm_forward(a.q_pre.f32(), w.q_norm.f32(), q32.f32(), n * c.num_attention_heads, c.head_dim, c.rms_norm_eps,
                    a.rstd_q.f32());
    rmsnorm_forward(a.k_pre.f32(), w.k_norm.f32(), k32.f32(), n * c.num_key_value_heads, c.head_dim, c.rms_norm_eps,
                    a.rstd_k.f32());
  }
  if (c.query_scale() != 1.0f) {  // (RoPE is linear: scaling before it is scaling after)
    auto t = timed(Phase::Elementwise);
    scale_in_place(q32.f32(), c.query_scale(), q32.numel());
  }
  if (c.uses_rope(l)) {
    auto t = timed(Phase::Rope);
    const RopeTable& table = c.is_sliding(l) ? rope_local_ : rope_;
    rope_forward(q32.f32(), data<E>(a.q), positions_.data(), n, c.num_attention_heads, c.head_dim, table);
    rope_forward(k32.f32(), data<E>(a.k), positions_.data(), n, c.num_key_value_heads, c.head_dim, table);
  } else if (!f32) {
    auto t = timed(Phase::Elementwise);
    store_as(q32.f32(), data<E>(a.q), q32.numel());
    store_as(k32.f32(), data<E>(a.k), k32.numel());
  }
  if (!f32) {
    auto t = timed(Phase::Elementwise);
    store_as(v32.f32(), data<E>(a.v), v32.numel());
  }
  const AttentionShape shape{c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.attention_window(l),
                             c.attn_logit_softcapping};
  {
    auto t = timed(Phase::AttentionForward, double(B) * attention_forward_flops(T, shape));
    attention_forward(data<E>(a.q), data<E>(a.k), data<E>(a.v), data<E>(a.att), T, 0, shape, a.attn_stats.f32(), B);
  }
  if (!c.gemma_block) {
    lin(kO, a.att, a.h);
  } else {
    lin(kO, a.att, a.o_out);
    auto t = timed(Phase::RmsNorm);
    rmsnorm_forward(a.o_out.f32(), w.post_attn_norm.f32(), a.h.f32(), n, c.hidden_size, c.rms_norm_eps,
                    a.rstd_post_attn.f32());
  }
  {
    auto t = timed(Phase::Elementwise);
    add_into(a.h, x);  // h = x + Lo att (Gemma: x + rmsnorm(Lo att))
  }
  {
    auto t = timed(Phase::RmsNorm);
    rmsnorm_forward(a.h.f32(), w.ffn_norm.f32(), data<E>(a.xn_ffn), n, c.hidden_size, c.rms_norm_eps, a.rstd_ffn.f32());
  }
  {
    const double flops = linear_flops(slots[kGate], n, false, false) + linear_flops(slots[kUp], n, false, false);
    projections_side_by_side(profiler, flops, [&] { lin(kGate, a.xn_ffn, gate32); },
                             [&] { lin(kUp, a.xn_ffn, up32); });
  }
  {
    auto t = timed(Phase::SwiGlu);
    if (c.gemma_block)
      geglu_forward(gate32.f32(), up32.f32(), data<E>(a.act), f32 ? nullptr : data<E>(a.gate), f32 ? nullptr : data<E>(a.up),
                    a.act.numel());
    else
      swiglu_forward(gate32.f32(), up32.f32(), data<E>(a.act), f32 ? nullptr : data<E>(a.gate), f32 ? nullptr : data<E>(a.up),
                     a.act.numel());
  }
  if (!c.gemma_block) {
    lin(kDown, a.act, x_out);
  } else {
    lin(kDown, a.act, a.down_out);
    auto t = timed(Phase::RmsNorm);
    rmsnorm_forward(a.down_out.f32(), w.post_ffn_norm.f32(), x_out.f32(), n, c.hidden_size, c.rms_norm_eps,
                    a.rstd_post_ffn.f32());
  }
  auto t = timed(Phase::Elementwise);
  add_into(x_out, a.h);  // x' = h + Ld act (Gemma: h + rmsnorm(Ld act))
}

template <typename E>
void TrainableModel::layer_backward_as(int64_t l, LayerActivations& a, Tensor& dx, int64_t B, int64_t T) {
  constexpr bool f32 = std::is_same_v<E, float>;
  const ModelConfig& c = base_.config;
  const LayerWeights& w = weights_.layers[size_t(l)];
  auto& slots = slots_[size_t(l)];
  const int64_t n = B * T;
  const Tensor& x = residual_[size_t(l)];
  auto norm_grad = [&](NormWeight which) {
    Tensor& g = norm_grads_[size_t(l)][which];
    return g.empty() ? nullptr : g.f32();
  };
  float* dnorm_attn = norm_grad(kAttnNorm);
  float* dnorm_ffn = norm_grad(kFfnNorm);
  auto back = [&](Proj p, const Tensor& in, const Tensor& dout, Tensor* din, bool accumulate) {
    LinearParams lp = slots[p].params();
    lp.profiler = profiler;
    adapted_linear_backward(lp, in, dout, a.linear[p], din, accumulate);
  };
  auto timed = [&](Phase phase, double flops = 0) { return Profiler::Scope(profiler, phase, flops); };

  std::unique_ptr<GradScratch>& gs = grad_scratch_[f32 ? 0 : 1];
  if (!gs) gs = std::make_unique<GradScratch>();
  gs->allocate(c, n, a.dtype);
  GradScratch& g = *gs;
  Tensor &dact = g.dact, &dgate = g.dgate, &dup = g.dup, &dxn = g.dxn, &dres = g.dres;
  // The residual gradient as the GEMMs read it (its E copy is refreshed wherever dx changes).
  Tensor& dx_e = f32 ? dx : g.dx_e;
  if (!f32) {
    auto t = timed(Phase::Elementwise);
    store_as(dx.f32(), data<E>(dx_e), dx.numel());
  }

  // Gemma: the gradient at a post-norm's input, in what the GEMM reads (dpost itself on f32 blocks, else dx_e,
  // which is refreshed from dx after the MLP block and at the next block's start).
  auto through_post_norm = [&](const Tensor& norm_in, const Tensor& weight, const Tensor& rstd, NormWeight which) -> Tensor& {
    {
      auto t = timed(Phase::RmsNorm);
      rmsnorm_backward(dx.f32(), norm_in.f32(), weight.f32(), rstd.f32(), g.dpost.f32(), norm_grad(which), n, c.hidden_size);
    }
    if (f32) return g.dpost;
    auto t = timed(Phase::Elementwise);
    store_as(g.dpost.f32(), data<E>(g.dx_e), g.dpost.numel());
    return g.dx_e;
  };

  // MLP block
  back(kDown, a.act, c.gemma_block ? through_post_norm(a.down_out, w.post_ffn_norm, a.rstd_post_ffn, kPostFfnNorm) : dx_e,
       &dact, false);
  {
    auto t = timed(Phase::SwiGlu);
    if (c.gemma_block)
      geglu_backward(dact.f32(), data<E>(a.gate), data<E>(a.up), data<E>(dgate), data<E>(dup), dact.numel());
    else
      swiglu_backward(dact.f32(), data<E>(a.gate), data<E>(a.up), data<E>(dgate), data<E>(dup), dact.numel());
  }
  // side by side as in the forward, each into its own input-gradient buffer, summed after
  {
    const double flops = linear_flops(slots[kGate], n, true, true) + linear_flops(slots[kUp], n, true, true);
    projections_side_by_side(profiler, flops, [&] { back(kGate, a.xn_ffn, dgate, &dxn, false); },
                             [&] { back(kUp, a.xn_ffn, dup, &g.dxn2, false); });
  }
  {
    auto t = timed(Phase::Elementwise);
    add_into(dxn, g.dxn2);
  }
  {
    auto t = timed(Phase::RmsNorm);
    rmsnorm_backward(dxn.f32(), a.h.f32(), w.ffn_norm.f32(), a.rstd_ffn.f32(), dres.f32(), dnorm_ffn, n, c.hidden_size);
  }
  {
    auto t = timed(Phase::Elementwise);
    add_into_and_store(dx.f32(), dres.f32(), data<E>(dx_e), dx.numel());  // dh
  }

  // attention block
  Tensor &datt = g.datt, &dq = g.dq, &dk = g.dk, &dv = g.dv;
  back(kO, a.att, c.gemma_block ? through_post_norm(a.o_out, w.post_attn_norm, a.rstd_post_attn, kPostAttnNorm) : dx_e,
       &datt, false);
  const AttentionShape shape{c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.attention_window(l),
                             c.attn_logit_softcapping};
  {
    auto t = timed(Phase::AttentionBackward, double(B) * attention_backward_flops(T, shape));
    attention_backward(datt.f32(), data<E>(a.q), data<E>(a.k), data<E>(a.v), data<E>(a.att), a.attn_stats.f32(),
                       dq.f32(), dk.f32(), dv.f32(), T, shape, B);
  }
  if (c.query_scale() != 1.0f) {
    auto t = timed(Phase::Elementwise);
    scale_in_place(dq.f32(), c.query_scale(), dq.numel());
  }
  Tensor &dq_e = f32 ? dq : g.dq_e, &dk_e = f32 ? dk : g.dk_e, &dv_e = f32 ? dv : g.dv_e;
  // dq, dk back through RoPE (straight into their E copies when nothing follows), then through the head norms
  // in place; what the GEMMs read is stored as E last.
  const bool rope = c.uses_rope(l);
  const RopeTable& rope_table = c.is_sliding(l) ? rope_local_ : rope_;
  if (rope) {
    auto t = timed(Phase::Rope);
    if (c.qk_norm) {
      rope_backward(dq.f32(), positions_.data(), n, c.num_attention_heads, c.head_dim, rope_table);
      rope_backward(dk.f32(), positions_.data(), n, c.num_key_value_heads, c.head_dim, rope_table);
    } else {
      rope_backward(dq.f32(), data<E>(dq_e), positions_.data(), n, c.num_attention_heads, c.head_dim, rope_table);
      rope_backward(dk.f32(), data<E>(dk_e), positions_.data(), n, c.num_key_value_heads, c.head_dim, rope_table);
    }
  }
  if (c.qk_norm) {
    auto t = timed(Phase::RmsNorm);
    rmsnorm_backward(dq.f32(), a.q_pre.f32(), w.q_norm.f32(), a.rstd_q.f32(), dq.f32(), norm_grad(kQNorm),
                     n * c.num_attention_heads, c.head_dim);
    rmsnorm_backward(dk.f32(), a.k_pre.f32(), w.k_norm.f32(), a.rstd_k.f32(), dk.f32(), norm_grad(kKNorm),
                     n * c.num_key_value_heads, c.head_dim);
  }
  if (!f32) {
    auto t = timed(Phase::Elementwise);
    if (c.qk_norm || !rope) {
      store_as(dq.f32(), data<E>(dq_e), dq.numel());
      store_as(dk.f32(), data<E>(dk_e), dk.numel());
    }
    store_as(dv.f32(), data<E>(dv_e), dv.numel());
  }
  // The first block's input gradient feeds only the embedding: without a trained embedding (or norm) nothing
  // reads it, and the three input-gradient GEMMs are skipped (the adapters' own gradients are still formed).
  const bool input_grad = l > 0 || !embed_grad_.empty() || embed_lora_ || dnorm_attn;
  {
    const double flops = linear_flops(slots[kQ], n, true, input_grad) + linear_flops(slots[kK], n, true, input_grad) +
                         linear_flops(slots[kV], n, true, input_grad);
    projections_side_by_side(profiler, flops, [&] { back(kQ, a.xn_attn, dq_e, input_grad ? &dxn : nullptr, false); },
                             [&] {
                               back(kK, a.xn_attn, dk_e, input_grad ? &g.dxn2 : nullptr, false);
                               back(kV, a.xn_attn, dv_e, input_grad ? &g.dxn2 : nullptr, true);
                             });
  }
  if (!input_grad) return;
  {
    auto t = timed(Phase::Elementwise);
    add_into(dxn, g.dxn2);
  }
  {
    auto t = timed(Phase::RmsNorm);
    rmsnorm_backward(dxn.f32(), x.f32(), w.attn_norm.f32(), a.rstd_attn.f32(), dres.f32(), dnorm_attn, n, c.hidden_size);
  }
  auto t = timed(Phase::Elementwise);
  add_into(dx, dres);  // gradient at the block input
}

TrainableModel::Result TrainableModel::run(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T,
                                           float grad_scale, bool backward) {
  const ModelConfig& c = base_.config;
  const int64_t n = B * T, L = c.num_hidden_layers, hidden = c.hidden_size;
  if (B < 1 || T < 1) fail("a batch needs at least one sequence of one token");
  if (T > c.max_position_embeddings)
    fail("sequence length {} exceeds the model's context ({})", T, c.max_position_embeddings);
  // (LongRoPE's factors follow the sequence length, as transformers picks them by the positions it sees)
  auto stale = [&](const RopeTable& t) { return t.max_positions < T || t.long_factors != rope_uses_long_factors(c, T); };
  if (stale(rope_)) rope_ = RopeTable(c, std::max<int64_t>(T, 256), T);
  if (c.has_sliding_layers() && stale(rope_local_)) rope_local_ = RopeTable(c.local_rope_config(), std::max<int64_t>(T, 256), T);
  positions_.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) positions_[i] = int32_t(i % T);
  const bool training = backward;
  const uint64_t seed = training ? rng_() : 0;

  // residual stream and activations
  residual_.resize(size_t(L + 1));
  for (Tensor& r : residual_)
    if (r.empty() || r.dim(0) != n) r = Tensor(DType::F32, {n, hidden});
  const bool shared = gradient_checkpointing || !backward;
  acts_.resize(shared ? 1 : size_t(L));
  if (!forward_scratch_) forward_scratch_ = std::make_unique<ForwardScratch>();

  // embedding (+ LoRA: x_i += s · B A[:, id_i])
  std::optional<Profiler::Scope> timed;
  timed.emplace(profiler, Phase::Embedding);
  embedding_forward(weights_.tok_embeddings, tokens, n, residual_[0].f32());
  const float embed_scale = c.embedding_scale(weights_.tok_embeddings.dtype() == DType::BF16);
  if (embed_scale != 1.0f) scale_in_place(residual_[0].f32(), embed_scale, residual_[0].numel());  // (Gemma; the LoRA adds unscaled)
  Tensor embed_u;
  if (embed_lora_) {
    const EmbeddingLora& e = *embed_lora_;
    embed_u = Tensor(DType::F32, {n, e.r});
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < e.r; ++k) embed_u.f32()[i * e.r + k] = e.lora_embedding_a.f32()[k * c.vocab_size + tokens[i]];
    matmul(mat(embed_u), false, mat(e.lora_embedding_b), true, mut_mat(residual_[0]), e.scaling, 1.0f);
  }

  timed.reset();
  for (int64_t l = 0; l < L; ++l) {
    LayerActivations& a = acts_[shared ? 0 : size_t(l)];
    a.allocate(c, n, storage_type(l));
    layer_forward(l, a, B, T, training, seed);
  }

  // final norm and the loss through lm_head (+ LoRA), chunked
  if (xn_final_.empty() || xn_final_.dim(0) != n) {
    xn_final_ = Tensor(DType::F32, {n, hidden});
    rstd_final_ = Tensor(DType::F32, {n});
  }
  timed.emplace(profiler, Phase::RmsNorm);
  rmsnorm_forward(residual_[size_t(L)].f32(), weights_.norm.f32(), xn_final_.f32(), n, hidden, c.rms_norm_eps,
                  rstd_final_.f32());
  timed.reset();
  LowRankLogits head_lr;
  Tensor du;
  if (head_lora_) {
    Profiler::Scope t(profiler, Phase::LoraProducts);
    std::mt19937_64 rng = dropout_rng(seed, L, 0);
    lora_down_forward(*head_lora_, xn_final_, head_saved_, training ? &rng : nullptr);
    head_lr.u = head_saved_.u.f32();
    head_lr.b = &head_lora_->lora_b;
    head_lr.scale = head_lora_->scaling;
    if (backward) {
      du = Tensor(DType::F32, {n, head_lora_->r});
      head_lr.du = du.f32();
      head_lr.db = head_lora_->grad_b.f32();
    }
  }
  Tensor dx;
  if (backward) {
    dx = Tensor(DType::F32, {n, hidden});
  }
  Tensor dxn_final = backward ? Tensor(DType::F32, {n, hidden}) : Tensor();
  Tensor* head_grad = head_grad_.empty() ? (weights_.lm_head.data() == weights_.tok_embeddings.data() && !embed_grad_.empty()
                                                ? &embed_grad_ : nullptr)
                                         : &head_grad_;
  timed.emplace(profiler, Phase::LmHeadLoss, (backward ? 4.0 : 2.0) * double(n) * double(c.vocab_size) * double(hidden));
  const CrossEntropyResult ce = lm_head_cross_entropy(
      xn_final_.f32(), weights_.lm_head, targets, n, loss_chunk_rows, grad_scale, backward ? dxn_final.f32() : nullptr,
      backward && head_grad ? head_grad->f32() : nullptr, head_lora_ ? &head_lr : nullptr, &logits_workspace_,
      c.final_logit_softcapping);
  timed.reset();
  Result result{ce.loss_sum, ce.count};
  if (!backward) return result;

  if (head_lora_) {
    Profiler::Scope t(profiler, Phase::LoraProducts);
    lora_down_backward(*head_lora_, xn_final_, head_saved_, du, &dxn_final);
  }
  timed.emplace(profiler, Phase::RmsNorm);
  rmsnorm_backward(dxn_final.f32(), residual_[size_t(L)].f32(), weights_.norm.f32(), rstd_final_.f32(), dx.f32(),
                   final_norm_grad_.empty() ? nullptr : final_norm_grad_.f32(), n, hidden);
  timed.reset();

  for (int64_t l = L - 1; l >= 0; --l) {
    LayerActivations& a = acts_[shared ? 0 : size_t(l)];
    if (gradient_checkpointing) {
      // Recompute the block from its kept input; it rewrites residual_[l + 1] with the same values.
      Tensor kept_output = residual_[size_t(l) + 1];
      residual_[size_t(l) + 1] = Tensor(DType::F32, {n, hidden});
      a.allocate(c, n, storage_type(l));
      layer_forward(l, a, B, T, training, seed);
      residual_[size_t(l) + 1] = kept_output;
    }
    layer_backward(l, a, dx, B, T);
  }

  timed.emplace(profiler, Phase::Embedding);
  if (!embed_grad_.empty()) {
    if (embed_scale == 1.0f) {
      embedding_backward(dx.f32(), tokens, n, embed_grad_.f32(), hidden);
    } else {
      Tensor scaled = dx.clone();
      scale_in_place(scaled.f32(), embed_scale, scaled.numel());
      embedding_backward(scaled.f32(), tokens, n, embed_grad_.f32(), hidden);
    }
  }
  if (embed_lora_) {
    // dB += s · dxᵀ u;  dA[:, id_i] += s · Bᵀ dx_i
    EmbeddingLora& e = *embed_lora_;
    matmul(mat(dx), true, mat(embed_u), false, mut_mat(e.grad_b), e.scaling, 1.0f);
    Tensor du_embed(DType::F32, {n, e.r});
    matmul(mat(dx), false, mat(e.lora_embedding_b), false, mut_mat(du_embed), e.scaling);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < e.r; ++k) e.grad_a.f32()[k * c.vocab_size + tokens[i]] += du_embed.f32()[i * e.r + k];
  }
  return result;
}

TrainableModel::Result TrainableModel::forward_backward(const int32_t* tokens, const int32_t* targets, int64_t B,
                                                        int64_t T, float grad_scale) {
  return run(tokens, targets, B, T, grad_scale, true);
}

TrainableModel::Result TrainableModel::evaluate(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T) {
  return run(tokens, targets, B, T, 0.0f, false);
}

}  // namespace lora
