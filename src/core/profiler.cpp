#include "core/profiler.h"

#include <omp.h>

#include <time.h>

#include <fmt/format.h>

namespace lora {

namespace {

int64_t clock_ns(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
int64_t wall_ns() { return clock_ns(CLOCK_MONOTONIC); }
int64_t cpu_ns() { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

}  // namespace

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::BaseForward: return "base GEMMs forward (x·Wᵀ)";
    case Phase::BaseInputGrad: return "base GEMMs input gradient (dy·W)";
    case Phase::LoraProducts: return "LoRA products (A·x, B·u, gradients)";
    case Phase::AttentionForward: return "attention forward";
    case Phase::AttentionBackward: return "attention backward";
    case Phase::RmsNorm: return "RMSNorm forward + backward";
    case Phase::Rope: return "RoPE forward + backward";
    case Phase::SwiGlu: return "SwiGLU forward + backward";
    case Phase::LmHeadLoss: return "lm_head + cross-entropy (fwd + bwd)";
    case Phase::Embedding: return "embedding";
    case Phase::Optimizer: return "clipping + AdamW";
    case Phase::Elementwise: return "residual adds, copies, casts";
    case Phase::Projections: return "q/k/v and gate/up side by side (base + LoRA)";
    case Phase::AllReduce: return "gradient all-reduce over the ranks (MPI)";
    case Phase::kCount: break;
  }
  return "?";
}

Profiler::Profiler(int threads) : threads_(threads < 1 ? 1 : threads) {}

void Profiler::begin_step() {
  in_step_ = true;
  step_start_wall_ = wall_ns();
  step_start_cpu_ = cpu_ns();
}

void Profiler::end_step() {
  if (!in_step_) return;
  step_wall_ns_ += wall_ns() - step_start_wall_;
  step_cpu_ns_ += cpu_ns() - step_start_cpu_;
  ++steps_;
  in_step_ = false;
}

Profiler::Scope::Scope(Profiler* p, Phase phase, double flops)
    : p_(p && p->in_step_ && !omp_in_parallel() ? p : nullptr), phase_(phase), flops_(flops) {
  if (!p_) return;
  wall0_ = wall_ns();
  cpu0_ = cpu_ns();
}

Profiler::Scope::~Scope() {
  if (!p_) return;
  Totals& t = p_->totals_[size_t(phase_)];
  t.wall_ns += wall_ns() - wall0_;
  t.cpu_ns += cpu_ns() - cpu0_;
  t.flops += flops_;
  ++t.calls;
}

double Profiler::mean_ms(Phase p) const {
  return steps_ == 0 ? 0.0 : double(totals_[size_t(p)].wall_ns) / 1e6 / double(steps_);
}

double Profiler::mean_step_ms() const { return steps_ == 0 ? 0.0 : double(step_wall_ns_) / 1e6 / double(steps_); }

std::string Profiler::table() const {
  if (steps_ == 0) return "no profiled step\n";
  const double n = double(steps_), step_ms = mean_step_ms();
  std::string out = fmt::format("profile: mean of {} step{}, {} thread{}\n\n", steps_, steps_ == 1 ? "" : "s", threads_,
                                threads_ == 1 ? "" : "s");
  out += "| phase | ms/step | % of step | GFLOP/s | calls/step | thread use |\n|---|---|---|---|---|---|\n";
  double covered_ms = 0, idle_thread_ms = 0;
  for (size_t i = 0; i < totals_.size(); ++i) {
    const Totals& t = totals_[i];
    if (t.calls == 0) continue;
    const double ms = double(t.wall_ns) / 1e6 / n, cpu_ms = double(t.cpu_ns) / 1e6 / n;
    covered_ms += ms;
    idle_thread_ms += std::max(0.0, ms * threads_ - cpu_ms);
    const std::string gflops = t.flops > 0 && t.wall_ns > 0 ? fmt::format("{:.1f}", t.flops / double(t.wall_ns)) : "";
    out += fmt::format("| {} | {:.2f} | {:.1f}% | {} | {:.0f} | {:.0f}% |\n", phase_name(Phase(i)), ms,
                       100.0 * ms / step_ms, gflops, double(t.calls) / n,
                       ms > 0 ? 100.0 * cpu_ms / (ms * threads_) : 0.0);
  }
  const double other_ms = std::max(0.0, step_ms - covered_ms);
  const double step_cpu_ms = double(step_cpu_ns_) / 1e6 / n;
  // Thread idle inside the phases, as wall time of the whole team (idle thread-ms over threads).
  out += fmt::format("| thread idle (inside the phases above) | {:.2f} | {:.1f}% | | | |\n", idle_thread_ms / threads_,
                     100.0 * idle_thread_ms / threads_ / step_ms);
  out += fmt::format("| other (not in a phase) | {:.2f} | {:.1f}% | | | |\n", other_ms, 100.0 * other_ms / step_ms);
  out += fmt::format("| **step** | **{:.2f}** | 100% | | | {:.0f}% |\n", step_ms,
                     100.0 * step_cpu_ms / (step_ms * threads_));
  return out;
}

}  // namespace lora
