#pragma once
// Two independent pieces of work run side by side, one OpenMP thread each. For work that one thread does
// nearly as fast as two (the thin LoRA products; a pair of GEMMs, each of which keeps one core busier than
// a two-threaded GEMM keeps two): every matmul called inside runs on its calling thread alone
// (core/matmul.h). Sequential when there is one thread or when already inside a parallel region.
#include <omp.h>

namespace lora {

template <class F, class G>
void run_side_by_side(F&& f, G&& g) {
  if (omp_get_max_threads() < 2 || omp_in_parallel()) {
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
