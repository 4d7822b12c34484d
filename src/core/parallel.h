#pragma once
// Two independent pieces of work run side by side, one OpenMP thread each. For work that one thread does
// nearly as fast as two (the thin LoRA products; a pair of GEMMs, each of which keeps one core busier than
// a two-threaded GEMM keeps two): every matmul called inside runs on its calling thread alone
// (core/matmul.h). Sequential when there is one thread, when already inside a parallel region, or when the
// caller says the work is too small to pay for a parallel region (`flops`, the pair's arithmetic, below
// kSideBySideMinFlops: on tiny models, and many of their calls, the fork and join would dominate).
// 1e7 FLOPs is some 50 µs of one core's GEMM work; a parallel region costs a few µs while the threads
// spin, and much more once they have gone to sleep or another process shares the cores.
#include <omp.h>

namespace lora {

constexpr double kSideBySideMinFlops = 1e7;

// Whether run_side_by_side(flops, ...) runs its two parts in parallel.
inline bool runs_side_by_side(double flops) {
  return flops >= kSideBySideMinFlops && omp_get_max_threads() >= 2 && !omp_in_parallel();
}

template <class F, class G>
void run_side_by_side(double flops, F&& f, G&& g) {
  if (!runs_side_by_side(flops)) {
    f();
    g();
    return;
  }
#pragma omp parallel sections num_threads(2)
  {
#pragma omp section
    f();
#pragma omp section
    g();
  }
}

}  // namespace lora
