#include "core/context.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace lora {

namespace {

int positive_env(const char* name) {
  const char* env = std::getenv(name);
  const int n = env ? std::atoi(env) : 0;
  return n > 0 ? n : 0;
}

}  // namespace

// LORA_THREADS, else OMP_NUM_THREADS, else the cores shared among the processes mpirun started on this
// machine (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE, MPICH's MPI_LOCALNRANKS; 1 without mpirun).
int default_thread_count() {
  if (const int n = positive_env("LORA_THREADS")) return n;
  if (const int n = positive_env("OMP_NUM_THREADS")) return n;
  int local = positive_env("OMPI_COMM_WORLD_LOCAL_SIZE");
  if (!local) local = positive_env("MPI_LOCALNRANKS");
  const int hw = std::max(1, int(std::thread::hardware_concurrency()));
  return std::max(1, hw / std::max(1, local));
}

int set_thread_count(int n) {
  if (n <= 0) n = default_thread_count();
  omp_set_num_threads(n);
  return n;
}

int thread_count() { return omp_get_max_threads(); }

}  // namespace lora
