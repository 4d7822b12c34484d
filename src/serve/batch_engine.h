#pragma once
// Continuous batching over one base model, with a different adapter per request (S-LoRA / Punica):
//
//   loop:  admit queued requests into free slots (each slot is one sequence's KV cache)
//          one step = every decoding sequence's next token + chunks of the prompts being read,
//                     through Transformer::forward_steps (base GEMMs once for all rows, then each
//                     adapter's low-rank product on its own rows)
//          sample each finished row, stream its text, free the slots of ended or cancelled requests
//
// A request joins the running batch between two steps and leaves it as soon as it ends, so short and
// long requests, and requests for different adapters, share every step. One engine thread owns the
// Transformer; HTTP threads only submit jobs and read their streams.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "model/transformer.h"
#include "serve/generation.h"
#include "serve/metrics.h"

namespace lora::serve {

struct EngineOptions {
  int64_t parallel = 4;      // slots: sequences in the running batch
  int64_t ctx = 2048;        // tokens per sequence (prompt + reply)
  int64_t max_queue = 64;    // requests waiting for a slot; one more is answered 429
  int64_t step_tokens = 256; // prompt tokens read per step, so a long prompt does not stall the decoding rows
};

class BatchEngine {
 public:
  BatchEngine(const Model& base, const EngineOptions& options, Metrics& metrics);
  ~BatchEngine();
  BatchEngine(const BatchEngine&) = delete;
  BatchEngine& operator=(const BatchEngine&) = delete;

  // Queues the job. ApiError 400 when the prompt leaves no room in the context (max_tokens is cut to
  // what is left), 429 when the queue is full, 503 once shutting down.
  std::shared_ptr<GenerationStream> submit(GenerationJob job);

  // Takes no new jobs; the running and queued ones go on until they end or `grace` has passed, then
  // the rest are cancelled and the engine thread ends.
  void shutdown(std::chrono::milliseconds grace);

  const EngineOptions& options() const { return options_; }

 private:
  struct Sequence;
  struct Queued {
    GenerationJob job;
    std::shared_ptr<GenerationStream> stream;
  };

  void run();
  void admit();
  void step();
  // Samples the token after `seq`'s last row of logits and streams it; true when the request ended.
  bool emit(Sequence& seq, const float* logits);
  void finish(Sequence& seq, GenerationEvent last, const std::string& reason);

  const Model& base_;
  EngineOptions options_;
  Metrics& metrics_;
  Transformer transformer_;
  std::vector<std::unique_ptr<Sequence>> slots_;  // engine thread only

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Queued> queue_;
  bool accepting_ = true;
  std::chrono::steady_clock::time_point cancel_at_;
  std::thread thread_;
};

}  // namespace lora::serve
