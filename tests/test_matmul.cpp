#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/matmul.h"
#include "kernels/small_matmul.h"

namespace lora {
namespace {

std::vector<float> random_vector(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

double max_rel_diff(const std::vector<float>& got, const std::vector<float>& want) {
  double worst = 0, scale = 1e-6;
  for (float w : want) scale = std::max(scale, double(std::fabs(w)));
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(double(got[i]) - want[i]) / scale);
  return worst;
}

struct Case {
  int64_t m, n, k;
  bool trans_a, trans_b;
  int64_t pad;  // extra elements per row: exercises strided views
  float alpha, beta;
};

class MatmulTest : public ::testing::TestWithParam<Case> {};

// Test names from the shape (gtest's default prints the struct's bytes, padding included: unstable names).
std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  return fmt::format("{}_{}x{}x{}{}{}", info.index, c.m, c.n, c.k, c.trans_a ? "_ta" : "", c.trans_b ? "_tb" : "");
}

TEST_P(MatmulTest, MatchesReferenceF32AndBf16) {
  const Case c = GetParam();
  const int64_t a_rows = c.trans_a ? c.k : c.m, a_cols = c.trans_a ? c.m : c.k;
  const int64_t b_rows = c.trans_b ? c.n : c.k, b_cols = c.trans_b ? c.k : c.n;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
  std::vector<float> a = random_vector(size_t(a_rows * lda), 1), b = random_vector(size_t(b_rows * ldb), 2);
  const std::vector<float> c0 = random_vector(size_t(c.m * ldc), 3);

  for (DType dt : {DType::F32, DType::BF16}) {
    std::vector<uint16_t> a16(a.size()), b16(b.size());
    for (size_t i = 0; i < a.size(); ++i) a16[i] = f32_to_bf16(a[i]);
    for (size_t i = 0; i < b.size(); ++i) b16[i] = f32_to_bf16(b[i]);
    const void* ap = dt == DType::F32 ? static_cast<const void*>(a.data()) : a16.data();
    const void* bp = dt == DType::F32 ? static_cast<const void*>(b.data()) : b16.data();
    const MatView av{ap, dt, a_rows, a_cols, lda}, bv{bp, dt, b_rows, b_cols, ldb};

    std::vector<float> got = c0, want = c0;
    matmul(av, c.trans_a, bv, c.trans_b, MutMatView{got.data(), c.m, c.n, ldc}, c.alpha, c.beta);
    matmul_reference(av, c.trans_a, bv, c.trans_b, MutMatView{want.data(), c.m, c.n, ldc}, c.alpha, c.beta);
    // Inputs are identical (already bf16-rounded for bf16), so only accumulation order differs.
    EXPECT_LT(max_rel_diff(got, want), 1e-5) << dtype_name(dt);
    // Padding between rows of C is never written.
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = c.n; j < ldc; ++j) ASSERT_EQ(got[i * ldc + j], c0[i * ldc + j]);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, MatmulTest,
                         ::testing::Values(Case{1, 1, 1, false, false, 0, 1.0f, 0.0f},
                                           Case{7, 13, 29, false, true, 0, 1.0f, 0.0f},
                                           Case{64, 48, 96, true, false, 3, 0.5f, 0.0f},
                                           Case{33, 17, 65, true, true, 5, 1.0f, 1.0f},
                                           Case{1, 512, 64, false, true, 0, 1.0f, 1.0f},
                                           Case{128, 256, 64, false, false, 1, -2.0f, 0.25f}), case_name);

// small_matmul (adapters at decode time) against the double-precision loop: on its own paths (a few rows times
// a transposed or a plain matrix) for every pair of operand types (bf16 x f32 computed in f32, the f32 operand
// unrounded), strides, alpha and beta; other shapes go to matmul (checked with equal operand types).
class SmallMatmulTest : public ::testing::TestWithParam<Case> {};

TEST_P(SmallMatmulTest, MatchesReferenceForEveryOperandType) {
  const Case c = GetParam();
  const bool own_path = c.m <= 4 && !c.trans_a;
  const int64_t a_rows = c.trans_a ? c.k : c.m, a_cols = c.trans_a ? c.m : c.k;
  const int64_t b_rows = c.trans_b ? c.n : c.k, b_cols = c.trans_b ? c.k : c.n;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
  std::vector<float> a = random_vector(size_t(a_rows * lda), 11), b = random_vector(size_t(b_rows * ldb), 12);
  const std::vector<float> c0 = random_vector(size_t(c.m * ldc), 13);
  std::vector<uint16_t> a16(a.size()), b16(b.size());
  for (size_t i = 0; i < a.size(); ++i) a16[i] = f32_to_bf16(a[i]);
  for (size_t i = 0; i < b.size(); ++i) b16[i] = f32_to_bf16(b[i]);
  for (DType ta : {DType::F32, DType::BF16})
    for (DType tb : {DType::F32, DType::BF16}) {
      if (!own_path && ta != tb) continue;
      const MatView av{ta == DType::F32 ? static_cast<const void*>(a.data()) : a16.data(), ta, a_rows, a_cols, lda};
      const MatView bv{tb == DType::F32 ? static_cast<const void*>(b.data()) : b16.data(), tb, b_rows, b_cols, ldb};
      std::vector<float> got = c0, want = c0;
      small_matmul(av, c.trans_a, bv, c.trans_b, MutMatView{got.data(), c.m, c.n, ldc}, c.alpha, c.beta);
      matmul_reference(av, c.trans_a, bv, c.trans_b, MutMatView{want.data(), c.m, c.n, ldc}, c.alpha, c.beta);
      EXPECT_LT(max_rel_diff(got, want), 1e-5) << dtype_name(ta) << " x " << dtype_name(tb);
      for (int64_t i = 0; i < c.m; ++i)
        for (int64_t j = c.n; j < ldc; ++j) ASSERT_EQ(got[i * ldc + j], c0[i * ldc + j]);
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, SmallMatmulTest,
                         ::testing::Values(Case{1, 1, 1, false, true, 0, 1.0f, 0.0f},
                                           Case{1, 16, 576, false, true, 0, 1.0f, 0.0f},   // u = A x
                                           Case{1, 576, 16, false, true, 0, 2.0f, 1.0f},   // y += s B u
                                           Case{4, 1536, 16, false, true, 3, 2.0f, 1.0f},
                                           Case{3, 40, 20, false, true, 2, 0.5f, 0.25f},
                                           Case{2, 33, 100, false, true, 1, -1.0f, 0.0f},
                                           Case{1, 576, 16, false, false, 0, 2.0f, 1.0f},  // y += s u Bᵀ
                                           Case{4, 1536, 16, false, false, 3, 2.0f, 1.0f},
                                           Case{3, 300, 20, false, false, 2, 0.5f, 0.25f},  // a partial block
                                           Case{1, 7, 1, false, false, 0, -1.0f, 0.0f},
                                           Case{7, 13, 29, false, true, 0, 1.0f, 0.0f},    // matmul's
                                           Case{1, 16, 64, true, false, 0, 1.0f, 1.0f}), case_name);  // matmul's

TEST(SmallMatmul, ShapeMismatchThrows) {
  std::vector<float> a(6), b(6), c(4);
  EXPECT_THROW(small_matmul(MatView{a.data(), DType::F32, 2, 3, 3}, false, MatView{b.data(), DType::F32, 2, 3, 3},
                            false, MutMatView{c.data(), 2, 2, 2}),
               Error);
}

TEST(Matmul, MixedF32ActivationWithBf16Weight) {
  const int64_t m = 5, n = 9, k = 31;
  std::vector<float> x = random_vector(size_t(m * k), 4), w = random_vector(size_t(n * k), 5);
  std::vector<uint16_t> w16(w.size());
  for (size_t i = 0; i < w.size(); ++i) w16[i] = f32_to_bf16(w[i]);
  std::vector<float> x_rounded(x.size());
  for (size_t i = 0; i < x.size(); ++i) x_rounded[i] = bf16_to_f32(f32_to_bf16(x[i]));

  std::vector<float> got(size_t(m * n)), want(size_t(m * n));
  matmul(MatView{x.data(), DType::F32, m, k, k}, false, MatView{w16.data(), DType::BF16, n, k, k}, true,
         MutMatView{got.data(), m, n, n});
  matmul_reference(MatView{x_rounded.data(), DType::F32, m, k, k}, false, MatView{w16.data(), DType::BF16, n, k, k},
                   true, MutMatView{want.data(), m, n, n});
  EXPECT_LT(max_rel_diff(got, want), 1e-5);
}

TEST(Matmul, ShapeMismatchThrows) {
  std::vector<float> a(6), b(6), c(4);
  EXPECT_THROW(matmul(MatView{a.data(), DType::F32, 2, 3, 3}, false, MatView{b.data(), DType::F32, 2, 3, 3}, false,
                      MutMatView{c.data(), 2, 2, 2}),
               Error);
}

TEST(Matmul, LinearAddsBias) {
  Tensor x(DType::F32, {2, 3}), w(DType::F32, {2, 3}), b(DType::F32, {2}), y(DType::F32, {2, 2});
  const float xs[] = {1, 2, 3, 4, 5, 6}, ws[] = {1, 0, -1, 0.5f, 0.5f, 0.5f};
  std::copy(xs, xs + 6, x.f32());
  std::copy(ws, ws + 6, w.f32());
  b.f32()[0] = 10;
  b.f32()[1] = -1;
  linear(x, w, &b, y);
  EXPECT_FLOAT_EQ(y.f32()[0], 1 - 3 + 10);
  EXPECT_FLOAT_EQ(y.f32()[1], 3 - 1);
  EXPECT_FLOAT_EQ(y.f32()[2], 4 - 6 + 10);
  EXPECT_FLOAT_EQ(y.f32()[3], 7.5f - 1);
}

}  // namespace
}  // namespace lora
