// Forward kernels against naive references written straight from the formulas.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/geglu.h"
#include "kernels/swiglu.h"
#include "model/random_model.h"
#include "model/sampler.h"
#include "model/transformer.h"

namespace lora {
namespace {

std::vector<float> randn(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TEST(Kernels, RmsNormMatchesFormula) {
  const int64_t rows = 3, dim = 37;
  auto x = randn(rows * dim, 1), w = randn(dim, 2);
  std::vector<float> y(x.size());
  rmsnorm_forward(x.data(), w.data(), y.data(), rows, dim, 1e-5f);
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0;
    for (int64_t i = 0; i < dim; ++i) ms += double(x[r * dim + i]) * x[r * dim + i] / dim;
    for (int64_t i = 0; i < dim; ++i)
      EXPECT_NEAR(y[r * dim + i], x[r * dim + i] / std::sqrt(ms + 1e-5) * w[i], 1e-5);
  }
}

TEST(Kernels, RopeRotatesHalvesAndKeepsRelativePosition) {
  ModelConfig c;
  c.head_dim = 16;
  c.rope_theta = 10000.0f;
  const RopeTable table(c, 64);
  // Element i pairs with i + d/2 and turns by pos * theta^(-2i/d).
  std::vector<float> x(16, 0.0f);
  x[3] = 1.0f;
  const int32_t pos = 5;
  rope_forward(x.data(), &pos, 1, 1, 16, table);
  const double angle = 5.0 * std::pow(10000.0, -6.0 / 16.0);
  EXPECT_NEAR(x[3], std::cos(angle), 1e-6);
  EXPECT_NEAR(x[3 + 8], std::sin(angle), 1e-6);
  // q(m)·k(n) depends only on m - n.
  auto q = randn(16, 3), k = randn(16, 4);
  auto dot_at = [&](int32_t m, int32_t n) {
    auto qm = q, kn = k;
    rope_forward(qm.data(), &m, 1, 1, 16, table);
    rope_forward(kn.data(), &n, 1, 1, 16, table);
    double d = 0;
    for (int i = 0; i < 16; ++i) d += double(qm[i]) * kn[i];
    return d;
  };
  EXPECT_NEAR(dot_at(10, 7), dot_at(40, 37), 1e-4);
}

TEST(Kernels, Llama3RopeScalingBands) {
  ModelConfig c;
  c.head_dim = 128;
  c.rope_theta = 500000.0f;
  c.rope_scaling = {"llama3", 8.0f, 1.0f, 4.0f, 8192};
  const auto scaled = rope_inv_freq(c);
  c.rope_scaling = {};
  const auto plain = rope_inv_freq(c);
  EXPECT_DOUBLE_EQ(scaled[0], plain[0]);               // highest frequency untouched
  EXPECT_NEAR(scaled[63], plain[63] / 8.0, 1e-15);      // lowest frequency divided by the factor
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_LE(scaled[i], plain[i] * (1 + 1e-12));
    EXPECT_GE(scaled[i], plain[i] / 8.0 * (1 - 1e-12));
  }
}

TEST(Kernels, AttentionMatchesNaiveGqa) {
  const AttentionShape s{4, 2, 8};
  const int64_t pos0 = 3, T = 5, S = pos0 + T;
  auto q = randn(T * s.q_dim(), 5), k = randn(S * s.kv_dim(), 6), v = randn(S * s.kv_dim(), 7);
  std::vector<float> out(q.size());
  attention_forward(q.data(), k.data(), v.data(), out.data(), T, pos0, s);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < s.n_heads; ++h) {
      const int64_t g = h / 2;
      std::vector<double> p(size_t(S), 0.0);
      double z = 0;
      for (int64_t j = 0; j <= pos0 + t; ++j) {
        double d = 0;
        for (int64_t i = 0; i < 8; ++i) d += double(q[t * 32 + h * 8 + i]) * k[j * 16 + g * 8 + i];
        p[j] = std::exp(d / std::sqrt(8.0));
        z += p[j];
      }
      for (int64_t i = 0; i < 8; ++i) {
        double o = 0;
        for (int64_t j = 0; j <= pos0 + t; ++j) o += p[j] / z * v[j * 16 + g * 8 + i];
        EXPECT_NEAR(out[t * 32 + h * 8 + i], o, 1e-5);
      }
    }
}

TEST(Kernels, SwiGluAndNll) {
  const float g[] = {-2.0f, 0.0f, 3.0f}, u[] = {1.0f, 5.0f, -1.0f};
  float o[3];
  swiglu_forward(g, u, o, 3);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(o[i], g[i] / (1 + std::exp(-g[i])) * u[i], 1e-6);
  const float logits[] = {1.0f, 2.0f, 3.0f};
  EXPECT_NEAR(token_nll(logits, 3, 2), std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0, 1e-9);
}

// GeGLU (tanh GELU) against its double-precision reference, f32 and with bf16 storage (inputs kept as bf16, the
// backward reading them and writing bf16 gradients); n not a multiple of any vector width.
TEST(Kernels, GeGluTanhMatchesReference) {
  const int64_t n = 20000 + 3;
  std::vector<float> g = randn(size_t(n), 41), u = randn(size_t(n), 42), d = randn(size_t(n), 43);
  for (float& x : g) x *= 3.0f;
  const size_t N = size_t(n);
  std::vector<float> out(N), ref(N), dg(N), du(N), dg_ref(N), du_ref(N);
  geglu_forward(g.data(), u.data(), out.data(), n);
  geglu_forward_reference(g.data(), u.data(), ref.data(), n);
  geglu_backward(d.data(), g.data(), u.data(), dg.data(), du.data(), n);
  geglu_backward_reference(d.data(), g.data(), u.data(), dg_ref.data(), du_ref.data(), n);
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    worst = std::max({worst, std::fabs(double(out[i]) - ref[i]) / (1.0 + std::fabs(ref[i])),
                      std::fabs(double(dg[i]) - dg_ref[i]) / (1.0 + std::fabs(dg_ref[i])),
                      std::fabs(double(du[i]) - du_ref[i]) / (1.0 + std::fabs(du_ref[i]))});
  }
  EXPECT_LT(worst, 2e-6);
  EXPECT_NEAR(ref[0], 0.5 * g[0] * (1 + std::tanh(std::sqrt(2 / M_PI) * (g[0] + 0.044715 * std::pow(g[0], 3)))) * u[0], 1e-5);

  std::vector<bf16> act(N), gk(N), uk(N), dgb(N), dub(N);
  geglu_forward<bf16>(g.data(), u.data(), act.data(), gk.data(), uk.data(), n);
  geglu_backward<bf16, bf16>(d.data(), gk.data(), uk.data(), dgb.data(), dub.data(), n);
  std::vector<float> g16(N), u16(N);
  for (int64_t i = 0; i < n; ++i) g16[i] = bf16_to_f32(gk[i]), u16[i] = bf16_to_f32(uk[i]);
  geglu_forward_reference(g16.data(), u16.data(), ref.data(), n);
  geglu_backward_reference(d.data(), g16.data(), u16.data(), dg_ref.data(), du_ref.data(), n);
  double worst16 = 0;
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(bf16_to_f32(gk[i]), bf16_to_f32(f32_to_bf16(g[i])));
    worst16 = std::max({worst16, std::fabs(double(bf16_to_f32(act[i])) - ref[i]) / (1.0 + std::fabs(ref[i])),
                        std::fabs(double(bf16_to_f32(dgb[i])) - dg_ref[i]) / (1.0 + std::fabs(dg_ref[i])),
                        std::fabs(double(bf16_to_f32(dub[i])) - du_ref[i]) / (1.0 + std::fabs(du_ref[i]))});
  }
  EXPECT_LT(worst16, 8e-3);  // bf16 rounding of the results (2^-8 relative)
}

TEST(Sampler, GreedyTopKTopP) {
  const float logits[] = {0.1f, 3.0f, 2.9f, -1.0f};
  Sampler greedy({0.0f, 0, 1.0f, 1});
  EXPECT_EQ(greedy.sample(logits, 4), 1);
  Sampler top1({1.0f, 1, 1.0f, 7});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(top1.sample(logits, 4), 1);
  // top_p small enough that only the best token survives
  Sampler nucleus({1.0f, 0, 0.3f, 7});
  for (int i = 0; i < 20; ++i) EXPECT_EQ(nucleus.sample(logits, 4), 1);
  // with everything allowed, both near-equal tokens appear; the same seed repeats the sequence
  Sampler a({1.0f, 0, 1.0f, 42}), b({1.0f, 0, 1.0f, 42});
  int seen1 = 0, seen2 = 0;
  for (int i = 0; i < 200; ++i) {
    const int32_t x = a.sample(logits, 4);
    EXPECT_EQ(x, b.sample(logits, 4));
    seen1 += x == 1;
    seen2 += x == 2;
  }
  EXPECT_GT(seen1, 40);
  EXPECT_GT(seen2, 40);
}

TEST(Transformer, CachedDecodingEqualsFullPrefill) {
  ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.vocab_size = 50;
  c.attention_bias = true;
  const Model m = random_model(c, 11);
  const std::vector<int32_t> tokens = {1, 7, 3, 9, 22, 5, 41, 8};
  const int64_t T = int64_t(tokens.size());

  Transformer full(m, 1, 16);
  const Tensor all = full.forward(tokens.data(), 1, T, true).clone();

  Transformer step(m, 1, 16);
  step.forward(tokens.data(), 1, 3, false);  // prefill 3, then one at a time
  for (int64_t t = 3; t < T; ++t) {
    const Tensor& last = step.forward(&tokens[t], 1, 1, false);
    for (int64_t j = 0; j < c.vocab_size; ++j) ASSERT_NEAR(last.f32()[j], all.f32()[t * c.vocab_size + j], 1e-5);
  }

  // Two sequences in one batch give each its own logits.
  std::vector<int32_t> batch = tokens;
  batch.insert(batch.end(), tokens.rbegin(), tokens.rend());
  Transformer two(m, 2, 16);
  const Tensor& both = two.forward(batch.data(), 2, T, true);
  for (int64_t j = 0; j < T * c.vocab_size; ++j) ASSERT_NEAR(both.f32()[j], all.f32()[j], 1e-5);
}

}  // namespace
}  // namespace lora
