#include "core/context.h"

#include <omp.h>

#include <cstdlib>
#include <thread>

namespace lora {

int default_thread_count() {
  if (const char* env = std::getenv("LORA_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : int(hw);
}

int set_thread_count(int n) {
  if (n <= 0) n = default_thread_count();
  omp_set_num_threads(n);
  return n;
}

int thread_count() { return omp_get_max_threads(); }

}  // namespace lora
