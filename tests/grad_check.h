#pragma once
// Finite-difference gradient checking shared by the kernel and layer tests.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

namespace lora::test {

inline std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

inline double dot(const float* a, const float* b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += double(a[i]) * b[i];
  return s;
}
inline double dot(const std::vector<float>& a, const std::vector<float>& b) { return dot(a.data(), b.data(), a.size()); }

// Compares analytic[i] with the central difference (loss(x + h e_i) − loss(x − h e_i)) / 2h for every
// element of x (n values, modified in place and restored), within tol relative to the largest gradient.
inline void expect_gradient(float* x, size_t n, const float* analytic, const std::function<double()>& loss,
                            const char* what, float h = 1e-2f, double tol = 2e-3) {
  double scale = 1e-3;
  for (size_t i = 0; i < n; ++i) scale = std::max(scale, double(std::fabs(analytic[i])));
  for (size_t i = 0; i < n; ++i) {
    const float saved = x[i];
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    const double numeric = (up - down) / (2.0 * h);
    ASSERT_NEAR(analytic[i], numeric, tol * scale) << what << " element " << i;
  }
}

inline void expect_gradient(std::vector<float>& x, const std::vector<float>& analytic,
                            const std::function<double()>& loss, const char* what, float h = 1e-2f,
                            double tol = 2e-3) {
  ASSERT_EQ(x.size(), analytic.size());
  expect_gradient(x.data(), x.size(), analytic.data(), loss, what, h, tol);
}

}  // namespace lora::test
