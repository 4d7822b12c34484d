// Every kernel's backward against central finite differences of its forward, on the scalar
// L = Σ r ⊙ forward(x) with a fixed random r (so dL/dy = r).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/matmul.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/geglu.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "grad_check.h"

namespace lora {
namespace {

using test::dot;
using test::expect_gradient;
using test::randn;

TEST(KernelGrads, RmsNorm) {
  const int64_t rows = 3, dim = 11;
  auto x = randn(rows * dim, 1), w = randn(dim, 2), r = randn(rows * dim, 3);
  std::vector<float> y(x.size()), rstd(rows), dx(x.size()), dw(dim, 0.0f);
  auto loss = [&] {
    rmsnorm_forward(x.data(), w.data(), y.data(), rows, dim, 1e-5f);
    return dot(y, r);
  };
  rmsnorm_forward(x.data(), w.data(), y.data(), rows, dim, 1e-5f, rstd.data());
  rmsnorm_backward(r.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), rows, dim);
  expect_gradient(x, dx, loss, "dx");
  expect_gradient(w, dw, loss, "dweight");
}

TEST(KernelGrads, Rope) {
  ModelConfig c;
  c.head_dim = 8;
  const RopeTable table(c, 16);
  const int64_t rows = 4, heads = 2;
  const std::vector<int32_t> pos = {0, 3, 7, 15};
  auto x = randn(rows * heads * 8, 4), r = randn(rows * heads * 8, 5);
  auto loss = [&] {
    auto y = x;
    rope_forward(y.data(), pos.data(), rows, heads, 8, table);
    return dot(y, r);
  };
  auto dx = r;
  rope_backward(dx.data(), pos.data(), rows, heads, 8, table);
  expect_gradient(x, dx, loss, "dx");
}

// Phi-4-mini's partial rotary embedding with LongRoPE: 6 of each head's 10 values rotate (with the attention
// factor), the other 4 pass through; the gradient, in place and into a separate (bf16) output.
TEST(KernelGrads, PartialRotaryLongRope) {
  ModelConfig c;
  c.head_dim = 10;
  c.rotary_dim = 6;
  c.max_position_embeddings = 64;
  c.rope_scaling.type = "longrope";
  c.rope_scaling.short_factor = {1.0f, 1.5f, 2.0f};
  c.rope_scaling.long_factor = {1.0f, 3.0f, 9.0f};
  c.rope_scaling.original_max_position_embeddings = 16;
  c.rope_scaling.attention_factor = 1.2f;
  const RopeTable table(c, 32);  // a context of 32 > 16: the long factors
  ASSERT_TRUE(table.long_factors);
  ASSERT_EQ(table.half, 3);
  const int64_t rows = 3, heads = 2, d = 10;
  const std::vector<int32_t> pos = {0, 5, 31};
  auto x = randn(rows * heads * d, 14), r = randn(rows * heads * d, 15);
  // the naive rotation: pairs (i, i + 3) for i < 3 by pos·θ^(-2i/6)/long_factor[i], scaled by 1.2; the rest as is
  std::vector<float> want(x.size());
  for (int64_t row = 0; row < rows; ++row)
    for (int64_t h = 0; h < heads; ++h) {
      const float* v = x.data() + (row * heads + h) * d;
      float* o = want.data() + (row * heads + h) * d;
      for (int64_t i = 0; i < d; ++i) o[i] = v[i];
      for (int64_t i = 0; i < 3; ++i) {
        const double a = pos[size_t(row)] * std::pow(10000.0, -2.0 * double(i) / 6.0) / c.rope_scaling.long_factor[size_t(i)];
        o[i] = float(1.2 * (v[i] * std::cos(a) - v[i + 3] * std::sin(a)));
        o[i + 3] = float(1.2 * (v[i + 3] * std::cos(a) + v[i] * std::sin(a)));
      }
    }
  std::vector<float> got(x.size(), -7.0f);
  rope_forward<float>(x.data(), got.data(), pos.data(), rows, heads, d, table);  // (not in place: the rest is copied)
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << i;
  std::vector<bf16> got16(x.size());
  rope_forward<bf16>(x.data(), got16.data(), pos.data(), rows, heads, d, table);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(bf16_to_f32(got16[i]), want[i], 2e-2 * (1 + std::fabs(want[i]))) << i;
  auto loss = [&] {
    auto y = x;
    rope_forward(y.data(), pos.data(), rows, heads, d, table);
    return dot(y, r);
  };
  auto dx = r;
  rope_backward(dx.data(), pos.data(), rows, heads, d, table);
  expect_gradient(x, dx, loss, "dx");
  // with a context within the original one, the short factors
  EXPECT_FALSE(RopeTable(c, 32, 16).long_factors);
}

TEST(KernelGrads, SwiGlu) {
  const int64_t n = 40;
  auto g = randn(n, 6, 2.0f), u = randn(n, 7), r = randn(n, 8);
  std::vector<float> out(n), dg(n), du(n);
  auto loss = [&] {
    swiglu_forward(g.data(), u.data(), out.data(), n);
    return dot(out, r);
  };
  swiglu_backward(r.data(), g.data(), u.data(), dg.data(), du.data(), n);
  expect_gradient(g, dg, loss, "dgate");
  expect_gradient(u, du, loss, "dup");
}

TEST(KernelGrads, GeGluTanh) {
  const int64_t n = 40;
  auto g = randn(n, 26, 2.0f), u = randn(n, 27), r = randn(n, 28);
  std::vector<float> out(n), dg(n), du(n);
  auto loss = [&] {
    geglu_forward(g.data(), u.data(), out.data(), n);
    return dot(out, r);
  };
  geglu_backward(r.data(), g.data(), u.data(), dg.data(), du.data(), n);
  expect_gradient(g, dg, loss, "dgate");
  expect_gradient(u, du, loss, "dup");
}

TEST(KernelGrads, CausalGqaAttention) {
  const AttentionShape s{4, 2, 4};
  const int64_t T = 6;
  auto q = randn(T * s.q_dim(), 9), k = randn(T * s.kv_dim(), 10), v = randn(T * s.kv_dim(), 11);
  auto r = randn(T * s.q_dim(), 12);
  std::vector<float> out(q.size()), dq(q.size()), dk(k.size()), dv(v.size()), lse(size_t(2 * s.n_heads * T));
  auto loss = [&] {
    attention_forward(q.data(), k.data(), v.data(), out.data(), T, 0, s);
    return dot(out, r);
  };
  attention_forward(q.data(), k.data(), v.data(), out.data(), T, 0, s, lse.data());
  attention_backward(r.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), dq.data(), dk.data(), dv.data(), T, s);
  expect_gradient(q, dq, loss, "dq");
  expect_gradient(k, dk, loss, "dk");
  expect_gradient(v, dv, loss, "dv");
}

TEST(KernelGrads, LinearThroughMatmul) {
  // y = x Wᵀ: dx = dy W, dW = dyᵀ x, both through the one matmul interface.
  const int64_t m = 3, in = 5, out = 4;
  auto x = randn(m * in, 13), w = randn(out * in, 14), r = randn(m * out, 15);
  std::vector<float> y(m * out), dx(x.size()), dw(w.size());
  auto loss = [&] {
    matmul(MatView{x.data(), DType::F32, m, in, in}, false, MatView{w.data(), DType::F32, out, in, in}, true,
           MutMatView{y.data(), m, out, out});
    return dot(y, r);
  };
  matmul(MatView{r.data(), DType::F32, m, out, out}, false, MatView{w.data(), DType::F32, out, in, in}, false,
         MutMatView{dx.data(), m, in, in});
  matmul(MatView{r.data(), DType::F32, m, out, out}, true, MatView{x.data(), DType::F32, m, in, in}, false,
         MutMatView{dw.data(), out, in, in});
  expect_gradient(x, dx, loss, "dx");
  expect_gradient(w, dw, loss, "dW");
}

TEST(KernelGrads, EmbeddingScatterAddsRepeatedIds) {
  const int64_t vocab = 6, dim = 3;
  const std::vector<int32_t> ids = {2, 5, 2, 0};
  Tensor table(DType::F32, {vocab, dim});
  auto t = randn(vocab * dim, 16);
  std::copy(t.begin(), t.end(), table.f32());
  auto r = randn(ids.size() * dim, 17);
  std::vector<float> out(ids.size() * dim), dtable(t.size(), 0.0f);
  embedding_backward(r.data(), ids.data(), int64_t(ids.size()), dtable.data(), dim);
  auto loss = [&] {
    std::copy(t.begin(), t.end(), table.f32());
    embedding_forward(table, ids.data(), int64_t(ids.size()), out.data());
    return dot(out, r);
  };
  expect_gradient(t, dtable, loss, "dtable");
  for (int64_t j = 0; j < dim; ++j) EXPECT_FLOAT_EQ(dtable[2 * dim + j], r[0 * dim + j] + r[2 * dim + j]);
}

TEST(KernelGrads, ChunkedLmHeadCrossEntropyIgnoresMinus100) {
  const int64_t n = 7, dim = 6, vocab = 13;
  auto h = randn(n * dim, 18);
  Tensor W(DType::F32, {vocab, dim});
  auto wv = randn(vocab * dim, 19);
  const std::vector<int32_t> targets = {3, kIgnoreIndex, 0, 12, kIgnoreIndex, 5, 5};
  std::vector<float> dh(h.size()), dW(wv.size(), 0.0f);
  auto loss = [&] {
    std::copy(wv.begin(), wv.end(), W.f32());
    const auto r = lm_head_cross_entropy(h.data(), W, targets.data(), n, 3);
    return r.loss_sum / double(r.count);
  };
  std::copy(wv.begin(), wv.end(), W.f32());
  const auto r = lm_head_cross_entropy(h.data(), W, targets.data(), n, 3, 1.0f / 5.0f, dh.data(), dW.data());
  EXPECT_EQ(r.count, 5);
  // Chunk size does not change the result.
  const auto whole = lm_head_cross_entropy(h.data(), W, targets.data(), n, 100);
  EXPECT_NEAR(r.loss_sum, whole.loss_sum, 1e-9);
  // Mean NLL equals the plain per-token computation.
  double want = 0;
  std::vector<float> logits(vocab);
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == kIgnoreIndex) continue;
    for (int64_t v = 0; v < vocab; ++v) {
      double s = 0;
      for (int64_t j = 0; j < dim; ++j) s += double(h[i * dim + j]) * wv[v * dim + j];
      logits[v] = float(s);
    }
    want += token_nll(logits.data(), vocab, targets[i]);
  }
  EXPECT_NEAR(r.loss_sum, want, 1e-4);
  for (int64_t j = 0; j < dim; ++j) EXPECT_EQ(dh[1 * dim + j], 0.0f);  // ignored rows get no gradient
  expect_gradient(h, dh, loss, "dh", 1e-2f, 2e-3);
  expect_gradient(wv, dW, loss, "dlm_head", 1e-2f, 2e-3);
}

// Gemma 2's final soft cap: the loss is token_nll of c·tanh(h·Wᵀ / c), the gradients through the cap match finite
// differences, f32 and bf16 heads, and the cap changes the loss.
TEST(KernelGrads, LmHeadCrossEntropyWithASoftCap) {
  const int64_t n = 6, dim = 8, vocab = 37;
  auto h = randn(n * dim, 31, 2.0f);  // logits of several units: the cap of 3 bends them
  auto wv = randn(vocab * dim, 32);
  Tensor W(DType::F32, {vocab, dim});
  const std::vector<int32_t> targets = {3, kIgnoreIndex, 0, 36, 20, 20};
  const float cap = 3.0f;
  auto loss = [&] {
    std::copy(wv.begin(), wv.end(), W.f32());
    const auto r = lm_head_cross_entropy(h.data(), W, targets.data(), n, 4, 0.0f, nullptr, nullptr, nullptr, nullptr, cap);
    return r.loss_sum;
  };
  std::copy(wv.begin(), wv.end(), W.f32());
  std::vector<float> dh(h.size()), dW(wv.size(), 0.0f);
  const auto r = lm_head_cross_entropy(h.data(), W, targets.data(), n, 4, 1.0f, dh.data(), dW.data(), nullptr, nullptr, cap);
  double want = 0;
  std::vector<float> logits(vocab);
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == kIgnoreIndex) continue;
    for (int64_t v = 0; v < vocab; ++v) logits[v] = float(dot(h.data() + i * dim, wv.data() + v * dim, dim));
    softcap_logits(logits.data(), vocab, cap);
    for (float l : logits) EXPECT_LE(std::fabs(l), cap);
    want += token_nll(logits.data(), vocab, targets[i]);
  }
  EXPECT_NEAR(r.loss_sum, want, 1e-4);
  EXPECT_GT(std::fabs(lm_head_cross_entropy(h.data(), W, targets.data(), n, 4).loss_sum - want), 0.1);
  expect_gradient(h, dh, loss, "dh", 1e-2f, 2e-3);
  expect_gradient(wv, dW, loss, "dlm_head", 1e-2f, 2e-3);
  // A bf16 head: dlogits stored in bf16, the same gradient within bf16 rounding.
  std::copy(wv.begin(), wv.end(), W.f32());
  std::vector<float> dh16(h.size());
  lm_head_cross_entropy(h.data(), W.to(DType::BF16), targets.data(), n, 4, 1.0f, dh16.data(), nullptr, nullptr, nullptr, cap);
  double num = 0, den = 0;
  for (size_t i = 0; i < dh.size(); ++i) {
    num += double(dh16[i] - dh[i]) * (dh16[i] - dh[i]);
    den += double(dh[i]) * dh[i];
  }
  EXPECT_LT(std::sqrt(num / den), 2e-2);
}

// A vocabulary of many vector widths plus a tail: the vectorized softmax gives token_nll's loss and the
// gradient (softmax − onehot) · W computed plainly in double; with a bf16 head (dlogits stored in bf16 for
// its GEMMs) the gradient stays within bf16 rounding of it.
TEST(KernelGrads, LmHeadCrossEntropyWideVocabularyF32AndBf16) {
  const int64_t n = 5, dim = 24, vocab = 1003;
  auto h = randn(n * dim, 21);
  auto wv = randn(vocab * dim, 22);
  Tensor W(DType::F32, {vocab, dim});
  std::copy(wv.begin(), wv.end(), W.f32());
  const Tensor Wb = W.to(DType::BF16);
  const std::vector<int32_t> targets = {0, 1002, kIgnoreIndex, 17, 500};
  const float scale = 0.25f;
  for (const Tensor* w : {static_cast<const Tensor*>(&W), &Wb}) {
    const bool bf = w->dtype() == DType::BF16;
    std::vector<float> dh(h.size());
    const auto r = lm_head_cross_entropy(h.data(), *w, targets.data(), n, 2, scale, dh.data());
    double want_loss = 0;
    std::vector<double> want_dh(h.size(), 0.0);
    std::vector<float> logits(vocab);
    for (int64_t i = 0; i < n; ++i) {
      if (targets[i] == kIgnoreIndex) continue;
      for (int64_t v = 0; v < vocab; ++v) {
        // the bf16 GEMM rounds h to bf16 too
        double s = 0;
        for (int64_t j = 0; j < dim; ++j) {
          const float hx = bf ? bf16_to_f32(f32_to_bf16(h[i * dim + j])) : h[i * dim + j];
          s += double(hx) * mat(*w).at(v, j);
        }
        logits[v] = float(s);
      }
      want_loss += token_nll(logits.data(), vocab, targets[i]);
      double m = logits[0], z = 0;
      for (float x : logits) m = std::max(m, double(x));
      for (float x : logits) z += std::exp(x - m);
      for (int64_t v = 0; v < vocab; ++v) {
        const double g = scale * (std::exp(logits[v] - m) / z - (v == targets[i]));
        for (int64_t j = 0; j < dim; ++j) want_dh[i * dim + j] += g * mat(*w).at(v, j);
      }
    }
    EXPECT_EQ(r.count, 4);
    EXPECT_NEAR(r.loss_sum, want_loss, 1e-4 * want_loss) << (bf ? "bf16" : "f32");
    double diff = 0, norm = 0;
    for (size_t k = 0; k < dh.size(); ++k) {
      diff += std::pow(dh[k] - want_dh[k], 2);
      norm += want_dh[k] * want_dh[k];
    }
    EXPECT_LT(std::sqrt(diff), (bf ? 1e-2 : 1e-5) * std::sqrt(norm)) << (bf ? "bf16" : "f32");
    for (int64_t j = 0; j < dim; ++j) EXPECT_EQ(dh[2 * dim + j], 0.0f);
  }
}

}  // namespace
}  // namespace lora
