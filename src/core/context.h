#pragma once
// How many threads the engine's kernels and oneDNN use. Both run on the same OpenMP runtime (Debian's
// oneDNN is built against libgomp), so one setting governs every parallel region and nothing
// oversubscribes the cores.
namespace lora {

// LORA_THREADS from the environment if set, else OMP_NUM_THREADS, else the cores (divided among the
// processes mpirun started on this machine).
int default_thread_count();
// Applies n (<= 0 means default_thread_count()) to OpenMP and returns the count in effect.
int set_thread_count(int n);
int thread_count();

}  // namespace lora
