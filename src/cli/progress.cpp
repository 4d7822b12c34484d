#include "cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <fmt/format.h>

namespace lora::cli {

std::string format_duration(double seconds) {
  const int64_t s = std::isfinite(seconds) && seconds > 0 ? int64_t(seconds + 0.5) : 0;
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{:02}:{:02}", s / 60, s % 60);
}

bool TrainProgress::stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

TrainProgress::TrainProgress(int64_t total_steps, int64_t logging_steps, bool terminal)
    : total_(total_steps), logging_steps_(std::max<int64_t>(1, logging_steps)), terminal_(terminal) {}

TrainProgress::~TrainProgress() { finish(); }

namespace {

double eta_seconds(const StepLog& s) {
  if (s.steps_this_run <= 0) return 0;
  return s.elapsed_seconds / double(s.steps_this_run) * double(s.total_steps - s.step);
}

int terminal_width() {
  winsize w{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_col > 20) return w.ws_col;
  return 100;
}

}  // namespace

// AdaLoRA's current rank budget, when the run has one.
static std::string budget_text(const StepLog& s, const char* sep) {
  return s.budget < 0 ? std::string() : fmt::format("{}budget {}", sep, s.budget);
}

void TrainProgress::step(const StepLog& s) {
  last_ = s;
  if (terminal_) {
    draw();
    return;
  }
  if (s.step % logging_steps_ != 0 && s.step != s.total_steps) return;
  fmt::print(stderr, "step {}/{} | epoch {:.2f} | loss {:.4f} | lr {:.3e} | grad norm {:.3f}{} | {:.0f} tok/s | {} < {}\n",
             s.step, s.total_steps, s.epoch, s.loss, s.learning_rate, s.grad_norm, budget_text(s, " | "),
             s.tokens_per_second, format_duration(s.elapsed_seconds), format_duration(eta_seconds(s)));
  std::fflush(stderr);
}

void TrainProgress::eval(int64_t step, const EvalResult& e) {
  message(fmt::format("eval at step {}: loss {:.4f}, perplexity {:.3f} ({} tokens)", step, e.loss, e.perplexity, e.tokens));
}

void TrainProgress::message(const std::string& line) {
  clear();
  fmt::print(stderr, "{}\n", line);
  if (terminal_ && last_.step > 0) draw();
  std::fflush(stderr);
}

void TrainProgress::clear() {
  if (terminal_ && drawn_) fmt::print(stderr, "\r\033[K");
  drawn_ = false;
}

void TrainProgress::draw() {
  const StepLog& s = last_;
  const std::string stats = fmt::format(" {}/{} [epoch {:.2f}] loss {:.4f} lr {:.2e}{} {:.0f} tok/s {}<{}", s.step, total_,
                                        s.epoch, s.loss, s.learning_rate, budget_text(s, " "), s.tokens_per_second,
                                        format_duration(s.elapsed_seconds), format_duration(eta_seconds(s)));
  const double frac = total_ > 0 ? double(s.step) / double(total_) : 0.0;
  const int width = std::clamp(terminal_width() - int(stats.size()) - 8, 10, 50);
  const int filled = int(frac * width);
  const std::string bar = std::string(size_t(filled), '#') + std::string(size_t(width - filled), '-');
  fmt::print(stderr, "\r\033[K{:3.0f}% [{}]{}", 100.0 * frac, bar, stats);
  std::fflush(stderr);
  drawn_ = true;
}

void TrainProgress::finish() {
  if (terminal_ && drawn_) {
    fmt::print(stderr, "\n");
    std::fflush(stderr);
  }
  drawn_ = false;
}

}  // namespace lora::cli
