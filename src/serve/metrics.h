#pragma once
// The server's counters, shown at GET /metrics in Prometheus' text format: requests by model and how
// they ended, prompt and generated tokens, HTTP errors by status, the queue, the running batch and the
// recent generation speed.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace lora::serve {

class Metrics {
 public:
  void request_finished(const std::string& model, const std::string& finish_reason, int64_t prompt_tokens,
                        int64_t completion_tokens);
  void http_error(int status);
  // One decode step of the engine: `rows` sequences in the batch, `tokens` tokens generated, in `seconds`.
  void step(int64_t rows, int64_t tokens, double seconds);
  void set_queue(int64_t queued, int64_t running) {
    queued_ = queued;
    running_ = running;
  }
  void set_adapters(int64_t n) { adapters_ = n; }
  void set_slots(int64_t n) { slots_ = n; }

  int64_t running() const { return running_; }
  int64_t queued() const { return queued_; }
  int64_t cancelled() const;

  std::string prometheus() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, int64_t> requests_;  // (model, finish reason) -> count
  std::map<int, int64_t> http_errors_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0, steps_ = 0, step_rows_ = 0;
  double step_seconds_ = 0;
  // generation speed over the last few seconds
  std::chrono::steady_clock::time_point window_start_ = std::chrono::steady_clock::now();
  int64_t window_tokens_ = 0;
  double tokens_per_second_ = 0;
  std::atomic<int64_t> queued_{0}, running_{0}, adapters_{0}, slots_{0};
};

}  // namespace lora::serve
