#pragma once
// One request's generation as the batch engine sees it (GenerationJob), and the channel its results
// come back through (GenerationStream): the engine thread pushes an event per generated token, the
// HTTP thread waits for them, and either side can end it (the client by cancel(), when it goes away).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "model/sampler.h"
#include "serve/served_models.h"

namespace lora::serve {

struct GenerationJob {
  std::shared_ptr<const ServedModel> model;  // the base or an adapter
  std::vector<int32_t> prompt;
  // Completions continue the prompt's text (a first token's leading space is kept); chat replies start
  // fresh, as `lora chat` prints them.
  bool continues_prompt = false;
  SamplingParams sampling;
  int64_t max_tokens = 16;
  std::vector<std::string> stop;     // text that ends the reply (not included)
  std::vector<int32_t> stop_tokens;  // tokens that end it besides EOS (a template's end-of-turn token)
  int logprobs = -1;                 // -1: none; else alternatives per token
  bool ignore_eos = false;           // EOS and stop tokens do not end the reply
};

struct TokenLogprob {
  std::string token;  // the token's bytes
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;  // the most likely tokens at that step
};

struct GenerationEvent {
  std::string text;                    // newly released text (may be empty)
  std::optional<TokenLogprob> logprob; // of the token this event is for, when asked
  // Set on the last event: "stop", "length", "cancelled" or "error" (then `error` says why).
  std::string finish_reason;
  std::string error;
  int64_t prompt_tokens = 0, completion_tokens = 0;  // on the last event
  bool last() const { return !finish_reason.empty(); }
};

class GenerationStream {
 public:
  void push(GenerationEvent e) {
    {
      std::lock_guard lock(mutex_);
      if (e.last()) finished_ = true;
      events_.push_back(std::move(e));
    }
    ready_.notify_all();
  }
  // The next event, or nullopt if none came within `timeout`.
  std::optional<GenerationEvent> next(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (!ready_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
    GenerationEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
  }
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  bool finished() const {
    std::lock_guard lock(mutex_);
    return finished_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<GenerationEvent> events_;
  bool finished_ = false;
  std::atomic<bool> cancelled_{false};
};

}  // namespace lora::serve
