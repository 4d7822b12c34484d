// The blocked (flash-style) attention against the one-row-at-a-time reference, forward and backward, and
// its gradients against finite differences: causal masks across tile edges (T = 1, 7, 64, 65, 1000), grouped
// query heads, a key/value cache offset (pos0) and several sequences in one call.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "grad_check.h"
#include "kernels/amx_gemm.h"
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

// The AMX tile product (or its scalar stand-in where AMX is not compiled) on operands packed from f32 and
// bf16 sources, plain and transposed, with partial blocks zero-padded: against the naive loop on the same
// bf16-rounded values (fp32 accumulation in both, so only the summation order differs).
TEST(AmxGemm, PackedProductsMatchTheNaiveLoop) {
  if (!bf16_tiles_fast()) GTEST_LOG_(INFO) << "neither AMX nor AVX512-BF16 here: the scalar stand-in is tested";
  amx_configure();
  const int64_t rows = 50, depth = 70, cols = 45;  // padded to 64 x 96 x 64
  const int64_t M = 64, K = 96, N = 64;
  auto a = randn(size_t(rows * depth), 11), b = randn(size_t(depth * cols), 12);
  for (float& x : a) x = bf16_to_f32(f32_to_bf16(x));
  for (float& x : b) x = bf16_to_f32(f32_to_bf16(x));
  std::vector<float> at(a.size()), bt(b.size());  // the same matrices stored transposed
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t k = 0; k < depth; ++k) at[size_t(k * rows + i)] = a[size_t(i * depth + k)];
  for (int64_t k = 0; k < depth; ++k)
    for (int64_t j = 0; j < cols; ++j) bt[size_t(j * depth + k)] = b[size_t(k * cols + j)];
  std::vector<bf16> a16(a.size()), bt16(bt.size());
  for (size_t i = 0; i < a.size(); ++i) a16[i] = f32_to_bf16(a[i]);
  for (size_t i = 0; i < bt.size(); ++i) bt16[i] = f32_to_bf16(bt[i]);
  std::vector<double> want(size_t(rows * cols), 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      for (int64_t k = 0; k < depth; ++k) want[size_t(i * cols + j)] += double(a[size_t(i * depth + k)]) * b[size_t(k * cols + j)];
  for (int variant = 0; variant < 4; ++variant) {
    std::vector<bf16> pa(size_t(M * K)), pb(size_t(K * N));
    if (variant % 2 == 0)
      pack_a(a.data(), depth, false, rows, depth, M, K, pa.data());
    else
      pack_a(at.data(), rows, true, rows, depth, M, K, pa.data());
    if (variant / 2 == 0)
      pack_b(b.data(), cols, false, depth, cols, K, N, pb.data());
    else
      pack_b(bt16.data(), depth, true, depth, cols, K, N, pb.data());
    const int64_t ldc = N + 3;
    std::vector<float> c(size_t(M * ldc), 1.0f);
    amx_gemm(M, N, K, pa.data(), K, pb.data(), c.data(), ldc, variant == 3);  // the last one accumulates onto 1
    const double base = variant == 3 ? 1.0 : 0.0;
    double worst = 0;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        worst = std::max(worst, std::fabs(c[size_t(i * ldc + j)] - base - want[size_t(i * cols + j)]));
    EXPECT_LT(worst, 1e-4) << "variant " << variant;
    for (int64_t i = rows; i < M; ++i)  // zero rows of A give C = the accumulated value only
      EXPECT_EQ(c[size_t(i * ldc)], float(base)) << "variant " << variant;
  }
  (void)a16;
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

// Values rounded to bf16 (kept as f32), and the same as bf16 storage.
std::vector<float> rounded_to_bf16(std::vector<float> v) {
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}
std::vector<bf16> to_bf16(const std::vector<float>& v) {
  std::vector<bf16> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = f32_to_bf16(v[i]);
  return o;
}

// Sliding-window attention (Gemma's local layers): a query at position p sees keys p − W < j <= p. Windows of
// 1, of less than a tile, of exactly a tile and of more, on their own, after a KV cache offset and in a batch.
struct WindowCase {
  int64_t T, pos0, batch, window;
  AttentionShape shape;
};
const WindowCase kWindowCases[] = {{7, 0, 1, 1, {4, 2, 8}},     {70, 0, 1, 20, {3, 1, 16}},  {130, 0, 2, 64, {4, 2, 32}},
                                   {200, 0, 1, 65, {2, 1, 64}}, {1000, 0, 1, 100, {4, 2, 64}}, {70, 100, 2, 30, {2, 1, 64}},
                                   {1, 300, 1, 50, {4, 4, 32}},  {70, 0, 2, 24, {4, 2, 16}}};

TEST(Attention, SlidingWindowForwardIsAttentionOverTheLastWKeys) {
  // Independent of the reference's mask: the last query with a window W is plain attention of one query over
  // the last W keys alone (as a cache of W − 1 positions and the query).
  for (const WindowCase& c : kWindowCases) {
    AttentionShape s = c.shape;
    s.window = c.window;
    const int64_t S = c.pos0 + c.T, stride = S + 3;
    auto q = randn(size_t(c.batch * c.T * s.q_dim()), 5), k = randn(size_t(c.batch * stride * s.kv_dim()), 6),
         v = randn(size_t(c.batch * stride * s.kv_dim()), 7);
    std::vector<float> out(q.size()), ref(q.size());
    attention_forward(q.data(), k.data(), v.data(), out.data(), c.T, c.pos0, s, nullptr, c.batch, stride);
    for (int64_t b = 0; b < c.batch; ++b)
      attention_forward_reference(q.data() + b * c.T * s.q_dim(), k.data() + b * stride * s.kv_dim(),
                                  v.data() + b * stride * s.kv_dim(), ref.data() + b * c.T * s.q_dim(), c.T, c.pos0, s);
    EXPECT_LT(max_abs_diff(out, ref), 2e-5) << "T " << c.T << " window " << c.window;

    const int64_t W = std::min(c.window, S), b = c.batch - 1, last = (b * c.T + c.T - 1) * s.q_dim();
    AttentionShape plain = s;
    plain.window = 0;
    std::vector<float> alone(size_t(s.q_dim()));
    attention_forward_reference(q.data() + last, k.data() + (b * stride + S - W) * s.kv_dim(),
                                v.data() + (b * stride + S - W) * s.kv_dim(), alone.data(), 1, W - 1, plain);
    const std::vector<float> got(out.begin() + last, out.begin() + last + s.q_dim());
    EXPECT_LT(max_abs_diff(got, alone), 2e-5) << "T " << c.T << " window " << c.window;
    if (S > W) {  // and it differs from unwindowed attention
      std::vector<float> full(q.size());
      attention_forward(q.data(), k.data(), v.data(), full.data(), c.T, c.pos0, plain, nullptr, c.batch, stride);
      EXPECT_GT(max_abs_diff(full, out), 1e-3) << "T " << c.T << " window " << c.window;
    }
  }
}

TEST(Attention, SlidingWindowBackwardMatchesTheReferenceInF32AndBf16) {
  for (const WindowCase& c : kWindowCases) {
    if (c.pos0 != 0) continue;  // (the backward is for training: no cache)
    AttentionShape s = c.shape;
    s.window = c.window;
    const int64_t n = c.batch * c.T;
    const auto q = rounded_to_bf16(randn(size_t(n * s.q_dim()), 1)), k = rounded_to_bf16(randn(size_t(n * s.kv_dim()), 2)),
               v = rounded_to_bf16(randn(size_t(n * s.kv_dim()), 3));
    const auto dout = randn(q.size(), 4);
    std::vector<float> rq(q.size()), rk(k.size()), rv(v.size()), ref_out(q.size());
    for (int64_t b = 0; b < c.batch; ++b) {
      const int64_t qo = b * c.T * s.q_dim(), ko = b * c.T * s.kv_dim();
      attention_backward_reference(dout.data() + qo, q.data() + qo, k.data() + ko, v.data() + ko, rq.data() + qo,
                                   rk.data() + ko, rv.data() + ko, c.T, s);
      attention_forward_reference(q.data() + qo, k.data() + ko, v.data() + ko, ref_out.data() + qo, c.T, 0, s);
    }
    // f32
    std::vector<float> out(q.size()), stats(size_t(2 * c.batch * s.n_heads * c.T)), dq(q.size()), dk(k.size()), dv(v.size());
    attention_forward(q.data(), k.data(), v.data(), out.data(), c.T, 0, s, stats.data(), c.batch);
    attention_backward(dout.data(), q.data(), k.data(), v.data(), out.data(), stats.data(), dq.data(), dk.data(),
                       dv.data(), c.T, s, c.batch);
    EXPECT_LT(max_abs_diff(dq, rq), 2e-4) << "dq, T " << c.T << " window " << c.window;
    EXPECT_LT(max_abs_diff(dk, rk), 2e-4) << "dk, T " << c.T << " window " << c.window;
    EXPECT_LT(max_abs_diff(dv, rv), 2e-4) << "dv, T " << c.T << " window " << c.window;
    // bf16 storage (AMX / AVX512-BF16 tiles where the CPU has them): relative L2 error as the causal bf16 test
    const auto q16 = to_bf16(q), k16 = to_bf16(k), v16 = to_bf16(v);
    std::vector<bf16> out16(q.size());
    attention_forward(q16.data(), k16.data(), v16.data(), out16.data(), c.T, 0, s, stats.data(), c.batch);
    attention_backward(dout.data(), q16.data(), k16.data(), v16.data(), out16.data(), stats.data(), dq.data(), dk.data(),
                       dv.data(), c.T, s, c.batch);
    auto rel = [](const std::vector<float>& a, const std::vector<float>& b) {
      double num = 0, den = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        num += double(a[i] - b[i]) * (a[i] - b[i]);
        den += double(b[i]) * b[i];
      }
      return std::sqrt(num / std::max(den, 1e-4 * double(a.size())));
    };
    for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_f32(out16[i]);
    EXPECT_LT(rel(out, ref_out), 1.5e-2) << "bf16 out, T " << c.T << " window " << c.window;
    EXPECT_LT(rel(dq, rq), 1.5e-2) << "bf16 dq, T " << c.T << " window " << c.window;
    EXPECT_LT(rel(dk, rk), 1.5e-2) << "bf16 dk, T " << c.T << " window " << c.window;
    EXPECT_LT(rel(dv, rv), 1.5e-2) << "bf16 dv, T " << c.T << " window " << c.window;
  }
}

TEST(Attention, SlidingWindowGradientsMatchFiniteDifferences) {
  // A window of 20 over 70 positions: the window's far edge falls inside the first tile for the queries of the
  // second, so key tiles are partly seen, partly skipped.
  AttentionShape s{3, 1, 4};
  s.window = 20;
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

// Soft-capped scores (Gemma 2): s -> c·tanh(s / c) before the softmax, alone and with a sliding window, across
// tiles, f32 and bf16, forward and backward; the last query's output against the formula written out in double.
TEST(Attention, SoftCappedScoresMatchTheFormulaAndTheReference) {
  struct CapCase {
    int64_t T, batch, window;
    float cap;
    AttentionShape shape;
  };
  const CapCase cases[] = {{7, 1, 0, 1.5f, {4, 2, 8}}, {70, 2, 0, 2.0f, {3, 1, 32}}, {130, 1, 40, 3.0f, {4, 2, 64}}};
  for (const CapCase& c : cases) {
    AttentionShape s = c.shape;
    s.window = c.window;
    s.softcap = c.cap;
    const int64_t n = c.batch * c.T;
    // scores of a few units (q scaled up), so the cap bends them
    const auto q = rounded_to_bf16(randn(size_t(n * s.q_dim()), 1, 2.0f)), k = rounded_to_bf16(randn(size_t(n * s.kv_dim()), 2)),
               v = rounded_to_bf16(randn(size_t(n * s.kv_dim()), 3));
    const auto dout = randn(q.size(), 4);
    std::vector<float> out(q.size()), ref(q.size()), stats(size_t(2 * c.batch * s.n_heads * c.T));
    attention_forward(q.data(), k.data(), v.data(), out.data(), c.T, 0, s, stats.data(), c.batch);
    for (int64_t b = 0; b < c.batch; ++b)
      attention_forward_reference(q.data() + b * c.T * s.q_dim(), k.data() + b * c.T * s.kv_dim(),
                                  v.data() + b * c.T * s.kv_dim(), ref.data() + b * c.T * s.q_dim(), c.T, 0, s);
    EXPECT_LT(max_abs_diff(out, ref), 2e-5) << "T " << c.T << " cap " << c.cap;

    // The last query of the last head of the last sequence, written out: p_j ∝ e^(c·tanh(q·k_j / √d / c)).
    const int64_t b = c.batch - 1, h = s.n_heads - 1, t = c.T - 1, g = h / (s.n_heads / s.n_kv_heads);
    const int64_t first = c.window > 0 ? std::max<int64_t>(0, t + 1 - c.window) : 0;
    std::vector<double> w;
    double z = 0;
    for (int64_t j = first; j <= t; ++j) {
      const double x = dot(q.data() + (b * c.T + t) * s.q_dim() + h * s.head_dim,
                           k.data() + (b * c.T + j) * s.kv_dim() + g * s.head_dim, size_t(s.head_dim)) /
                       std::sqrt(double(s.head_dim));
      w.push_back(std::exp(c.cap * std::tanh(x / c.cap)));
      z += w.back();
    }
    double worst = 0;
    for (int64_t i = 0; i < s.head_dim; ++i) {
      double o = 0;
      for (int64_t j = first; j <= t; ++j) o += w[size_t(j - first)] / z * v[size_t((b * c.T + j) * s.kv_dim() + g * s.head_dim + i)];
      worst = std::max(worst, std::fabs(o - out[size_t((b * c.T + t) * s.q_dim() + h * s.head_dim + i)]));
    }
    EXPECT_LT(worst, 1e-5) << "T " << c.T << " cap " << c.cap;
    AttentionShape uncapped = s;
    uncapped.softcap = 0;
    std::vector<float> plain(q.size());
    attention_forward(q.data(), k.data(), v.data(), plain.data(), c.T, 0, uncapped, nullptr, c.batch);
    EXPECT_GT(max_abs_diff(plain, out), 1e-2) << "the cap changes the output, T " << c.T;

    std::vector<float> dq(q.size()), dk(k.size()), dv(v.size()), rq(q.size()), rk(k.size()), rv(v.size());
    attention_backward(dout.data(), q.data(), k.data(), v.data(), out.data(), stats.data(), dq.data(), dk.data(),
                       dv.data(), c.T, s, c.batch);
    for (int64_t bb = 0; bb < c.batch; ++bb) {
      const int64_t qo = bb * c.T * s.q_dim(), ko = bb * c.T * s.kv_dim();
      attention_backward_reference(dout.data() + qo, q.data() + qo, k.data() + ko, v.data() + ko, rq.data() + qo,
                                   rk.data() + ko, rv.data() + ko, c.T, s);
    }
    EXPECT_LT(max_abs_diff(dq, rq), 2e-4) << "dq, T " << c.T;
    EXPECT_LT(max_abs_diff(dk, rk), 2e-4) << "dk, T " << c.T;
    EXPECT_LT(max_abs_diff(dv, rv), 2e-4) << "dv, T " << c.T;

    // bf16 storage
    const auto q16 = to_bf16(q), k16 = to_bf16(k), v16 = to_bf16(v);
    std::vector<bf16> out16(q.size());
    attention_forward(q16.data(), k16.data(), v16.data(), out16.data(), c.T, 0, s, stats.data(), c.batch);
    attention_backward(dout.data(), q16.data(), k16.data(), v16.data(), out16.data(), stats.data(), dq.data(), dk.data(),
                       dv.data(), c.T, s, c.batch);
    auto rel = [](const std::vector<float>& a, const std::vector<float>& r) {
      double num = 0, den = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        num += double(a[i] - r[i]) * (a[i] - r[i]);
        den += double(r[i]) * r[i];
      }
      return std::sqrt(num / std::max(den, 1e-4 * double(a.size())));
    };
    for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_f32(out16[i]);
    EXPECT_LT(rel(out, ref), 1.5e-2) << "bf16 out, T " << c.T;
    EXPECT_LT(rel(dq, rq), 1.5e-2) << "bf16 dq, T " << c.T;
    EXPECT_LT(rel(dk, rk), 1.5e-2) << "bf16 dk, T " << c.T;
    EXPECT_LT(rel(dv, rv), 1.5e-2) << "bf16 dv, T " << c.T;
  }
}

TEST(Attention, SoftCappedGradientsMatchFiniteDifferences) {
  AttentionShape s{3, 1, 4};
  s.softcap = 1.0f;
  s.window = 30;
  const int64_t T = 70;
  auto q = randn(size_t(T * s.q_dim()), 9, 2.0f), k = randn(size_t(T * s.kv_dim()), 10), v = randn(size_t(T * s.kv_dim()), 11);
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

// The bf16 kernels (AMX tiles where the CPU has them, head_dim padded to 32) on the edge cases of the f32
// tests: one query, partial tiles, GQA, a KV cache offset with strided sequences, a batch, 1000 positions,
// head_dim 8/16/32/64. Against the f32 reference on the same bf16-rounded inputs, within what bf16 operands
// allow: relative L2 error below 1.5% (measured at most 0.3%; a wrong mask, block or head moves it to O(1)).
TEST(Attention, Bf16KernelsMatchTheReferenceOnEveryEdgeCase) {
  double worst = 0;
  auto rel = [&worst](const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      num += double(a[i] - b[i]) * (a[i] - b[i]);
      den += double(b[i]) * b[i];
    }
    const double r = std::sqrt(num / std::max(den, 1e-4 * double(a.size())));  // (T = 1: dq = dk = 0 exactly)
    worst = std::max(worst, r);
    return r;
  };
  const Case forward_cases[] = {{1, 0, 1, {4, 2, 8}},   {7, 0, 1, {4, 2, 8}},     {64, 0, 2, {6, 2, 16}},
                                {65, 0, 1, {3, 1, 64}}, {1000, 0, 1, {4, 2, 64}}, {5, 3, 1, {4, 2, 8}},
                                {1, 130, 2, {4, 4, 32}}, {70, 100, 2, {2, 1, 64}}};
  for (const Case& c : forward_cases) {
    const AttentionShape& s = c.shape;
    const int64_t S = c.pos0 + c.T, stride = S + 3;
    const auto q = rounded_to_bf16(randn(size_t(c.batch * c.T * s.q_dim()), 5));
    const auto k = rounded_to_bf16(randn(size_t(c.batch * stride * s.kv_dim()), 6));
    const auto v = rounded_to_bf16(randn(size_t(c.batch * stride * s.kv_dim()), 7));
    const auto q16 = to_bf16(q), k16 = to_bf16(k), v16 = to_bf16(v);
    std::vector<bf16> out16(q.size());
    std::vector<float> out(q.size()), ref(q.size()), stats(size_t(2 * c.batch * s.n_heads * c.T));
    attention_forward(q16.data(), k16.data(), v16.data(), out16.data(), c.T, c.pos0, s, stats.data(), c.batch, stride);
    for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_f32(out16[i]);
    for (int64_t b = 0; b < c.batch; ++b)
      attention_forward_reference(q.data() + b * c.T * s.q_dim(), k.data() + b * stride * s.kv_dim(),
                                  v.data() + b * stride * s.kv_dim(), ref.data() + b * c.T * s.q_dim(), c.T, c.pos0, s);
    EXPECT_LT(rel(out, ref), 1.5e-2) << "forward T " << c.T << " pos0 " << c.pos0 << " hd " << s.head_dim;
  }
  const Case backward_cases[] = {{1, 0, 1, {4, 2, 8}}, {7, 0, 1, {4, 2, 8}}, {64, 0, 2, {6, 3, 64}},
                                 {130, 0, 1, {4, 1, 32}}, {1000, 0, 1, {4, 2, 64}}};
  for (const Case& c : backward_cases) {
    const AttentionShape& s = c.shape;
    const int64_t n = c.batch * c.T;
    const auto q = rounded_to_bf16(randn(size_t(n * s.q_dim()), 1)), k = rounded_to_bf16(randn(size_t(n * s.kv_dim()), 2)),
               v = rounded_to_bf16(randn(size_t(n * s.kv_dim()), 3));
    const auto dout = randn(q.size(), 4);
    const auto q16 = to_bf16(q), k16 = to_bf16(k), v16 = to_bf16(v);
    std::vector<bf16> out16(q.size());
    std::vector<float> stats(size_t(2 * c.batch * s.n_heads * c.T)), dq(q.size()), dk(k.size()), dv(v.size()),
        rq(q.size()), rk(k.size()), rv(v.size());
    attention_forward(q16.data(), k16.data(), v16.data(), out16.data(), c.T, 0, s, stats.data(), c.batch);
    attention_backward(dout.data(), q16.data(), k16.data(), v16.data(), out16.data(), stats.data(), dq.data(), dk.data(),
                       dv.data(), c.T, s, c.batch);
    for (int64_t b = 0; b < c.batch; ++b) {
      const int64_t qo = b * c.T * s.q_dim(), ko = b * c.T * s.kv_dim();
      attention_backward_reference(dout.data() + qo, q.data() + qo, k.data() + ko, v.data() + ko, rq.data() + qo,
                                   rk.data() + ko, rv.data() + ko, c.T, s);
    }
    EXPECT_LT(rel(dq, rq), 1.5e-2) << "dq, T " << c.T << " hd " << s.head_dim;
    EXPECT_LT(rel(dk, rk), 1.5e-2) << "dk, T " << c.T << " hd " << s.head_dim;
    EXPECT_LT(rel(dv, rv), 1.5e-2) << "dv, T " << c.T << " hd " << s.head_dim;
  }
  RecordProperty("worst_relative_error", std::to_string(worst));
}

TEST(Attention, Bf16StorageAgreesWithF32WithinBf16Rounding) {
  // Activations stored in bf16 (the bf16 training path): q, k, v and the output in bf16, the softmax and the
  // gradients in f32 (the products' operands in bf16 too where AMX multiplies them). Against the f32 kernel on
  // the same (rounded) inputs, the output may differ by its own bf16 rounding (2^-8 relative) and the gradients
  // by the effect of the rounded output in D = do·o.
  const AttentionShape s{6, 2, 64};
  const int64_t T = 130, n = s.q_dim() * T;
  const auto q = rounded_to_bf16(randn(size_t(n), 1)), k = rounded_to_bf16(randn(size_t(T * s.kv_dim()), 2)), v = rounded_to_bf16(randn(size_t(T * s.kv_dim()), 3));
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
  // dv does not involve the output: with the scalar stand-in only the exp differs; the AMX / AVX512-BF16 products read P and dO in bf16
  // too (as FlashAttention's bf16 kernels do), measured 0.23%.
  EXPECT_LT(rel(dv16, dv), bf16_tiles_fast() ? 1e-2 : 1e-5);
}

}  // namespace
}  // namespace lora
