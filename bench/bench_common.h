#pragma once
// Small helpers the benchmark programs share: wall time, peak RSS, machine peak for MFU.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "core/matmul.h"
#include "core/tensor.h"

namespace lora::bench {

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Peak resident set size of this process in MiB (VmHWM).
inline double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

// bf16 GEMM peak of SPEC.md section 8 (measured with oneDNN on a 2-core AVX-512 host); MFU is achieved
// FLOP/s over this figure. The host these benchmarks run on may deliver less (measured_bf16_peak()).
constexpr double kPeakFlops = 750e9;

// Median of repeated timings of f(), in seconds.
template <typename F> double median_time(int reps, F&& f);

// The bf16 GEMM throughput this host delivers right now through the matmul interface (2048³, C = A·Bᵀ,
// median of 5 after a warm-up), FLOP/s: the "measured peak" MFU is stated against, beside kPeakFlops.
double measured_bf16_peak();


template <typename F> double median_time(int reps, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const double s = now_seconds();
    f();
    t.push_back(now_seconds() - s);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

inline double measured_bf16_peak() {
  const int64_t n = 2048;
  Tensor a(DType::F32, {n, n}), b(DType::F32, {n, n}), c(DType::F32, {n, n});
  for (int64_t i = 0; i < a.numel(); ++i) {
    a.f32()[i] = float(i % 7) * 0.1f;
    b.f32()[i] = float(i % 5) * 0.1f;
  }
  const Tensor a16 = a.to(DType::BF16), b16 = b.to(DType::BF16);
  auto run = [&] { matmul(mat(a16), false, mat(b16), true, mut_mat(c)); };
  run();
  return 2.0 * double(n) * double(n) * double(n) / median_time(5, run);
}

}  // namespace lora::bench
