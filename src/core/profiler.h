#pragma once
// Where the time of a training step goes, by kernel family: `lora train --profile` and
// `bench_train --profile` print it.
//
//   Profiler prof(thread_count());
//   model.profiler = &prof;
//   prof.begin_step(); ... forward, backward, optimizer ... prof.end_step();
//   fmt::print("{}", prof.table());
//
// A Scope adds its wall time, the process's CPU time over the same interval and the FLOPs it was given to
// one phase. Scopes do not nest: a kernel is timed where it is called, by the code that knows which
// family it belongs to. CPU time over wall time × threads says how busy the threads were; OpenMP's
// spin-waiting counts as busy, so "thread idle" is what a waiting thread did not spin through (serial code,
// sleeps). Time in a step that no scope covered is reported as "other".
//
// A null Profiler* is allowed everywhere and costs one branch: the kernels never need to know. Scopes opened
// inside an OpenMP parallel region (work run side by side, core/parallel.h) record nothing: the caller times
// the whole side-by-side section as one phase.
#include <array>
#include <cstdint>
#include <string>

namespace lora {

enum class Phase : uint8_t {
  BaseForward,        // frozen (or trained) weight GEMMs, x·Wᵀ
  BaseInputGrad,      // their input gradients, dy·W (and dW for trained weights)
  LoraProducts,       // the rank-r products: A·x, B·u and their gradients (DoRA's extra terms too)
  AttentionForward,
  AttentionBackward,
  RmsNorm,            // forward and backward
  Rope,               // forward and backward
  SwiGlu,             // forward and backward
  LmHeadLoss,         // lm_head GEMMs + softmax cross-entropy + its backward
  Embedding,          // lookup, its gradient and an embedding LoRA
  Optimizer,          // gradient clipping and AdamW
  Elementwise,        // residual adds, copies and casts between kernels
  Projections,        // q/k/v and gate/up run side by side, one thread each (base GEMMs + LoRA products)
  AllReduce,          // data-parallel runs: the gradients summed over the ranks (waiting for them included)
  kCount
};
const char* phase_name(Phase p);

class Profiler {
 public:
  explicit Profiler(int threads);

  void begin_step();
  void end_step();
  int64_t steps() const { return steps_; }

  class Scope {
   public:
    Scope(Profiler* p, Phase phase, double flops = 0);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Profiler* p_;
    Phase phase_;
    double flops_;
    int64_t wall0_ = 0, cpu0_ = 0;
  };

  // A Markdown table of the mean step: per phase ms, % of the step, GFLOP/s (phases given FLOPs),
  // thread use; then thread idle, other and the step itself.
  std::string table() const;
  // Mean ms per step of one phase (for tests and benchmarks).
  double mean_ms(Phase p) const;
  double mean_step_ms() const;

 private:
  struct Totals {
    int64_t wall_ns = 0, cpu_ns = 0;
    double flops = 0;
    int64_t calls = 0;
  };
  int threads_;
  std::array<Totals, size_t(Phase::kCount)> totals_{};
  int64_t step_wall_ns_ = 0, step_cpu_ns_ = 0, step_start_wall_ = 0, step_start_cpu_ = 0;
  int64_t steps_ = 0;
  bool in_step_ = false;
};

}  // namespace lora
