#pragma once
// Small helpers the benchmark programs share: wall time, peak RSS, machine peak for MFU.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

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

// bf16 GEMM peak measured with oneDNN on this 2-core AVX-512 machine (SPEC.md section 8); MFU is
// achieved FLOP/s over this figure.
constexpr double kPeakFlops = 750e9;

// Median of repeated timings of f(), in seconds.
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

}  // namespace lora::bench
