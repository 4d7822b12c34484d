// The blocked (flash-style) attention against the one-row-at-a-time reference, forward and backward, and
// its gradients against finite differences: causal masks across tile edges (T = 1, 7, 64, 65, 1000), grouped
// query heads, a key/value cache offset (pos0) and several sequences in one call.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "grad_check.h"
#include "kernels/attention.h"
#include "kernels/tile_gemm.h"

namespace lora {
namespace {

using test::dot;
using test::expect_gradient;
using test::randn;

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

TEST(TileGemm, MatchesTheNaiveLoopOnEveryEdgeShape) {
  for (int64_t M : {1, 5, 6, 7, 64})
    for (int64_t N : {1, 15, 16, 17, 64, 100})
      for (int64_t K : {1, 3, 64})
        for (bool trans_a : {false, true})
          for (bool accumulate : {false, true}) {
            const int64_t lda = trans_a ? M + 3 : K + 2, ldb = N + 5, ldc = N + 1;
            auto a = randn(size_t((trans_a ? K : M) * lda), 1), b = randn(size_t(K * ldb), 2);
            auto c = randn(size_t(M * ldc), 3), ref = c;
            tile_gemm(M, N, K, a.data(), lda, trans_a, b.data(), ldb, c.data(), ldc, 0.5f, accumulate);
            tile_gemm_reference(M, N, K, a.data(), lda, trans_a, b.data(), ldb, ref.data(), ldc, 0.5f, accumulate);
            ASSERT_LT(max_abs_diff(c, ref), 1e-4) << M << "x" << N << "x" << K << " trans_a " << trans_a;
          }
}

struct Case {
  int64_t T, pos0, batch;
  AttentionShape shape;
};

TEST(Attention, ForwardMatchesTheReference) {
  const Case cases[] = {{1, 0, 1, {4, 2, 8}},     {7, 0, 1, {4, 2, 8}},    {64, 0, 2, {6, 2, 16}},
                        {65, 0, 1, {3, 1, 64}},   {1000, 0, 1, {4, 2, 64}}, {5, 3, 1, {4, 2, 8}},
                        {1, 130, 2, {4, 4, 32}},  {70, 100, 2, {2, 1, 64}}};
  for (const Case& c : cases) {
    const AttentionShape& s = c.shape;
    const int64_t S = c.pos0 + c.T, stride = S + 3;  // sequences of the cache sit `stride` rows apart
    auto q = randn(size_t(c.batch * c.T * s.q_dim()), 5), k = randn(size_t(c.batch * stride * s.kv_dim()), 6),
         v = randn(size_t(c.batch * stride * s.kv_dim()), 7);
    std::vector<float> out(q.size()), ref(q.size()), lse(size_t(2 * c.batch * s.n_heads * c.T));
    attention_forward(q.data(), k.data(), v.data(), out.data(), c.T, c.pos0, s, lse.data(), c.batch, stride);
    for (int64_t b = 0; b < c.batch; ++b)
      attention_forward_reference(q.data() + b * c.T * s.q_dim(), k.data() + b * stride * s.kv_dim(),
                                  v.data() + b * stride * s.kv_dim(), ref.data() + b * c.T * s.q_dim(), c.T, c.pos0, s);
    EXPECT_LT(max_abs_diff(out, ref), 2e-5) << "T " << c.T << " pos0 " << c.pos0;
    // stats hold m and 1/l with m + log l = log Σ_j e^(q·k_j/√d) over the visible keys: the last query of the
    // last head.
    const int64_t b = c.batch - 1, h = s.n_heads - 1, t = c.T - 1;
    double z = 0;
    for (int64_t j = 0; j <= c.pos0 + t; ++j)
      z += std::exp(dot(q.data() + (b * c.T + t) * s.q_dim() + h * s.head_dim,
                        k.data() + (b * stride + j) * s.kv_dim() + (h / (s.n_heads / s.n_kv_heads)) * s.head_dim,
                        size_t(s.head_dim)) / std::sqrt(double(s.head_dim)));
    const size_t at = size_t((b * s.n_heads + h) * c.T + t), rows = size_t(c.batch * s.n_heads * c.T);
    EXPECT_NEAR(lse[at] - std::log(lse[rows + at]), std::log(z), 1e-4);
  }
}

TEST(Attention, BackwardMatchesTheReference) {
  const Case cases[] = {{1, 0, 1, {4, 2, 8}}, {7, 0, 1, {4, 2, 8}}, {64, 0, 2, {6, 3, 64}}, {1000, 0, 1, {4, 2, 64}}};
  for (const Case& c : cases) {
    const AttentionShape& s = c.shape;
    const int64_t n = c.batch * c.T;
    auto q = randn(size_t(n * s.q_dim()), 1), k = randn(size_t(n * s.kv_dim()), 2), v = randn(size_t(n * s.kv_dim()), 3);
    auto dout = randn(q.size(), 4);
    std::vector<float> out(q.size()), lse(size_t(2 * c.batch * s.n_heads * c.T));
    std::vector<float> dq(q.size()), dk(k.size()), dv(v.size()), rq(q.size()), rk(k.size()), rv(v.size());
    attention_forward(q.data(), k.data(), v.data(), out.data(), c.T, 0, s, lse.data(), c.batch);
    attention_backward(dout.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), dq.data(), dk.data(),
                       dv.data(), c.T, s, c.batch);
    for (int64_t b = 0; b < c.batch; ++b) {
      const int64_t qo = b * c.T * s.q_dim(), ko = b * c.T * s.kv_dim();
      attention_backward_reference(dout.data() + qo, q.data() + qo, k.data() + ko, v.data() + ko, rq.data() + qo,
                                   rk.data() + ko, rv.data() + ko, c.T, s);
    }
    EXPECT_LT(max_abs_diff(dq, rq), 2e-4) << "dq, T " << c.T;
    EXPECT_LT(max_abs_diff(dk, rk), 2e-4) << "dk, T " << c.T;
    EXPECT_LT(max_abs_diff(dv, rv), 2e-4) << "dv, T " << c.T;
  }
}

TEST(Attention, GradientsMatchFiniteDifferencesAcrossTiles) {
  // 70 positions: two query and key tiles, the second partial, so the causal edge falls inside a tile and
  // between tiles; 3 query heads on one kv head.
  const AttentionShape s{3, 1, 4};
  const int64_t T = 70;
  auto q = randn(size_t(T * s.q_dim()), 9), k = randn(size_t(T * s.kv_dim()), 10), v = randn(size_t(T * s.kv_dim()), 11);
  auto r = randn(q.size(), 12);
  std::vector<float> out(q.size()), lse(size_t(2 * s.n_heads * T)), dq(q.size()), dk(k.size()), dv(v.size());
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

TEST(Attention, Bf16StorageAgreesWithF32WithinBf16Rounding) {
  // Activations stored in bf16 (the bf16 training path): q, k, v and the output in bf16, the products, the
  // softmax and the gradients in f32. Against the f32 kernel on the same (rounded) inputs, the output may differ
  // by its own bf16 rounding (2^-8 relative) and the gradients by the effect of the rounded output in D = do·o.
  const AttentionShape s{6, 2, 64};
  const int64_t T = 130, n = s.q_dim() * T;
  auto round = [](std::vector<float> v) {
    for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
    return v;
  };
  auto to_bf16 = [](const std::vector<float>& v) {
    std::vector<bf16> o(v.size());
    for (size_t i = 0; i < v.size(); ++i) o[i] = f32_to_bf16(v[i]);
    return o;
  };
  const auto q = round(randn(size_t(n), 1)), k = round(randn(size_t(T * s.kv_dim()), 2)), v = round(randn(size_t(T * s.kv_dim()), 3));
  const auto dout = randn(size_t(n), 4);
  const auto q16 = to_bf16(q), k16 = to_bf16(k), v16 = to_bf16(v);
  std::vector<float> out(static_cast<size_t>(n)), stats(static_cast<size_t>(2 * s.n_heads * T)), stats16(stats.size());
  std::vector<bf16> out16(static_cast<size_t>(n));
  attention_forward(q.data(), k.data(), v.data(), out.data(), T, 0, s, stats.data());
  attention_forward(q16.data(), k16.data(), v16.data(), out16.data(), T, 0, s, stats16.data());
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < n; ++i) {
    worst = std::max(worst, double(std::fabs(bf16_to_f32(out16[size_t(i)]) - out[size_t(i)])));
    scale = std::max(scale, double(std::fabs(out[size_t(i)])));
  }
  EXPECT_LE(worst, scale / 128) << "output";
  std::vector<float> dq(static_cast<size_t>(n)), dk(k.size()), dv(v.size()), dq16(static_cast<size_t>(n)), dk16(k.size()), dv16(v.size());
  attention_backward(dout.data(), q.data(), k.data(), v.data(), out.data(), stats.data(), dq.data(), dk.data(), dv.data(), T, s);
  attention_backward(dout.data(), q16.data(), k16.data(), v16.data(), out16.data(), stats16.data(), dq16.data(), dk16.data(),
                     dv16.data(), T, s);
  auto rel = [](const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      num += double(a[i] - b[i]) * (a[i] - b[i]);
      den += double(b[i]) * b[i];
    }
    return std::sqrt(num / den);
  };
  EXPECT_LT(rel(dq16, dq), 1e-2);
  EXPECT_LT(rel(dk16, dk), 1e-2);
  EXPECT_LT(rel(dv16, dv), 1e-5);  // dv does not involve the output at all: only the exp differs
}

}  // namespace
}  // namespace lora
