#include "serve/metrics.h"

#include <fmt/format.h>

namespace lora::serve {

void Metrics::request_finished(const std::string& model, const std::string& finish_reason, int64_t prompt_tokens,
                               int64_t completion_tokens) {
  std::lock_guard lock(mutex_);
  ++requests_[{model, finish_reason}];
  prompt_tokens_ += prompt_tokens;
  completion_tokens_ += completion_tokens;
}

void Metrics::http_error(int status) {
  std::lock_guard lock(mutex_);
  ++http_errors_[status];
}

void Metrics::step(int64_t rows, int64_t tokens, double seconds) {
  std::lock_guard lock(mutex_);
  ++steps_;
  step_rows_ += rows;
  step_seconds_ += seconds;
  window_tokens_ += tokens;
  const auto now = std::chrono::steady_clock::now();
  const double window = std::chrono::duration<double>(now - window_start_).count();
  if (window >= 2.0) {
    tokens_per_second_ = double(window_tokens_) / window;
    window_start_ = now;
    window_tokens_ = 0;
  }
}

int64_t Metrics::cancelled() const {
  std::lock_guard lock(mutex_);
  int64_t n = 0;
  for (const auto& [key, count] : requests_)
    if (key.second == "cancelled") n += count;
  return n;
}

std::string Metrics::prometheus() const {
  std::lock_guard lock(mutex_);
  std::string out;
  const auto metric = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  const auto escape = [](const std::string& s) {
    std::string e;
    for (char c : s) e += c == '"' || c == '\\' ? std::string("\\") + c : c == '\n' ? std::string("\\n") : std::string(1, c);
    return e;
  };
  metric("lora_requests_total", "counter", "Generation requests finished, by model and finish reason.");
  for (const auto& [key, count] : requests_)
    out += fmt::format("lora_requests_total{{model=\"{}\",finish_reason=\"{}\"}} {}\n", escape(key.first), key.second, count);
  metric("lora_http_errors_total", "counter", "Requests answered with an error, by HTTP status.");
  for (const auto& [status, count] : http_errors_) out += fmt::format("lora_http_errors_total{{status=\"{}\"}} {}\n", status, count);
  metric("lora_prompt_tokens_total", "counter", "Prompt tokens processed.");
  out += fmt::format("lora_prompt_tokens_total {}\n", prompt_tokens_);
  metric("lora_generation_tokens_total", "counter", "Tokens generated.");
  out += fmt::format("lora_generation_tokens_total {}\n", completion_tokens_);
  metric("lora_engine_steps_total", "counter", "Batched forward steps of the engine.");
  out += fmt::format("lora_engine_steps_total {}\n", steps_);
  metric("lora_engine_step_rows_total", "counter", "Sequences summed over the engine's steps (divide by steps: mean batch).");
  out += fmt::format("lora_engine_step_rows_total {}\n", step_rows_);
  metric("lora_engine_step_seconds_total", "counter", "Time spent in the engine's forward steps.");
  out += fmt::format("lora_engine_step_seconds_total {:.6f}\n", step_seconds_);
  metric("lora_generation_tokens_per_second", "gauge", "Tokens generated per second over the last few seconds.");
  // An idle engine reports its speed falling off rather than the last busy window's.
  const double idle = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start_).count();
  out += fmt::format("lora_generation_tokens_per_second {:.2f}\n",
                     idle >= 4.0 ? double(window_tokens_) / idle : tokens_per_second_);
  metric("lora_queue_length", "gauge", "Requests waiting for a slot.");
  out += fmt::format("lora_queue_length {}\n", queued_.load());
  metric("lora_running_requests", "gauge", "Requests holding a slot of the running batch.");
  out += fmt::format("lora_running_requests {}\n", running_.load());
  metric("lora_slots", "gauge", "Sequences the engine decodes at once (--parallel).");
  out += fmt::format("lora_slots {}\n", slots_.load());
  metric("lora_adapters_loaded", "gauge", "Adapters served beside the base model.");
  out += fmt::format("lora_adapters_loaded {}\n", adapters_.load());
  return out;
}

}  // namespace lora::serve
