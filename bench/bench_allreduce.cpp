// The gradient all-reduce of a data-parallel LoRA step, per published shape: how many bytes each rank sums
// per step (LoRA r on every linear layer of every block, as --target all-linear defines it; lm_head and the
// embedding are not adapted) and how long GradientAllReduce takes for them between the ranks mpirun started:
//
//   mpirun -np 2 ./build/bench/bench_allreduce [--rank 16] [--reps 5]
//
// Prints one Markdown row per shape (on rank 0). Run under the same mpirun as training (shared memory
// between ranks on one machine, TCP or InfiniBand across machines) to see what that transport gives.
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench_common.h"
#include "core/communicator.h"
#include "model/random_model.h"
#include "train/data_parallel.h"

using namespace lora;

int main(int argc, char** argv) {
  int64_t rank = 16;
  int reps = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rank" && i + 1 < argc) rank = std::stoll(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::stoi(argv[++i]);
  }
  const auto world = world_communicator();
  if (world->is_root())
    fmt::print("| shape | LoRA r={} params | MB all-reduced per step | {} ranks: all-reduce ms (median of {}) | GB/s (bytes / time) |\n"
               "|---|---|---|---|---|\n", rank, world->size(), reps);
  const std::pair<const char*, ModelConfig> shapes[] = {
      {"SmolLM2-135M", smollm2_135m_config()}, {"Qwen2.5-0.5B", qwen25_05b_config()}, {"Llama-2-7B", llama2_7b_config()}};
  for (const auto& [name, c] : shapes) {
    // A and B of the seven projections of every block: r x in and out x r each.
    const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), f = c.intermediate_size;
    const std::vector<std::pair<int64_t, int64_t>> linears = {{h, q}, {h, kv}, {h, kv}, {q, h}, {h, f}, {h, f}, {f, h}};
    std::vector<Tensor> values, grads;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l)
      for (const auto& [in, out] : linears)
        for (int64_t n : {rank * in, out * rank}) {
          values.push_back(Tensor::zeros(DType::F32, {n}));
          grads.push_back(Tensor::zeros(DType::F32, {n}));
        }
    std::vector<Param> params;
    for (size_t i = 0; i < grads.size(); ++i) params.push_back({std::to_string(i), &values[i], &grads[i]});
    GradientAllReduce reduce(params, *world);
    reduce.run("warm-up");
    const double s = bench::median_time(reps, [&] { reduce.run("the benchmark all-reduce"); });
    const double mb = double(reduce.floats()) * 4 / 1e6;
    if (world->is_root())
      fmt::print("| {} | {} | {:.1f} | {:.1f} | {:.2f} |\n", name, reduce.floats(), mb, s * 1e3, mb / 1e3 / s);
  }
  return 0;
}
