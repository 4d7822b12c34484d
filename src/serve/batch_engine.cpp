#include "serve/batch_engine.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "data/stop_text.h"
#include "serve/api_error.h"
#include "tokenizer/tokenizer.h"

namespace lora::serve {

struct BatchEngine::Sequence {
  GenerationJob job;
  std::shared_ptr<GenerationStream> stream;
  Sampler sampler;
  StreamDecoder decoder;
  StopText stop;
  int64_t n_past = 0;     // tokens of this sequence in its slot's cache
  int64_t generated = 0;
  int32_t next = 0;       // the token the next step feeds, once the prompt is read

  Sequence(Queued q, const Tokenizer& tok)
      : job(std::move(q.job)), stream(std::move(q.stream)), sampler(job.sampling), decoder(tok), stop(job.stop) {
    // A completion continues the prompt's text: decoding starts after its last token, so the first
    // generated token keeps the leading space a sequence's first token loses.
    if (job.continues_prompt) decoder.feed(job.prompt.back());
  }
  bool reading_prompt() const { return n_past < int64_t(job.prompt.size()); }
};

BatchEngine::BatchEngine(const Model& base, const EngineOptions& options, Metrics& metrics)
    : base_(base), options_(options), metrics_(metrics), transformer_(base, options.parallel, options.ctx),
      slots_(size_t(options.parallel)) {
  metrics_.set_slots(options.parallel);
  thread_ = std::thread([this] { run(); });
}

BatchEngine::~BatchEngine() { shutdown(std::chrono::milliseconds(0)); }

std::shared_ptr<GenerationStream> BatchEngine::submit(GenerationJob job) {
  const int64_t n_prompt = int64_t(job.prompt.size());
  if (n_prompt == 0) throw ApiError(400, "the prompt is empty", "prompt");
  if (n_prompt >= options_.ctx)
    throw ApiError(400,
                   "the prompt has " + std::to_string(n_prompt) + " tokens, which leaves no room in this server's context of " +
                       std::to_string(options_.ctx) + " tokens",
                   "messages", "context_length_exceeded");
  job.max_tokens = std::min(job.max_tokens, options_.ctx - n_prompt);
  auto stream = std::make_shared<GenerationStream>();
  {
    std::lock_guard lock(mutex_);
    if (!accepting_) throw ApiError(503, "the server is shutting down");
    if (int64_t(queue_.size()) >= options_.max_queue)
      throw ApiError(429, "the queue is full (" + std::to_string(options_.max_queue) + " requests waiting); retry later");
    queue_.push_back({std::move(job), stream});
    metrics_.set_queue(int64_t(queue_.size()), metrics_.running());
  }
  wake_.notify_one();
  return stream;
}

void BatchEngine::shutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard lock(mutex_);
    if (accepting_) cancel_at_ = std::chrono::steady_clock::now() + grace;
    accepting_ = false;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void BatchEngine::run() {
  for (;;) {
    bool grace_over = false;  // shutting down, and the running requests had their time
    {
      std::unique_lock lock(mutex_);
      const auto busy = [&] { return std::any_of(slots_.begin(), slots_.end(), [](const auto& s) { return s != nullptr; }); };
      wake_.wait(lock, [&] { return !queue_.empty() || busy() || !accepting_; });
      grace_over = !accepting_ && std::chrono::steady_clock::now() >= cancel_at_;
      if (grace_over)
        for (Queued& q : queue_) q.stream->cancel();
      if (!accepting_ && queue_.empty() && !busy()) return;
      admit();
    }
    if (grace_over)
      for (auto& s : slots_)
        if (s) s->stream->cancel();
    for (auto& s : slots_)
      if (s && s->stream->cancelled()) {
        finish(*s, {}, "cancelled");
        s.reset();
      }
    const auto running = [&] {
      int64_t n = 0;
      for (const auto& s : slots_) n += s != nullptr;
      return n;
    };
    if (running() > 0) step();
    metrics_.set_queue(metrics_.queued(), running());
  }
}

// Called with mutex_ held.
void BatchEngine::admit() {
  for (auto& slot : slots_) {
    while (!slot && !queue_.empty()) {
      Queued q = std::move(queue_.front());
      queue_.pop_front();
      auto seq = std::make_unique<Sequence>(std::move(q), *base_.tokenizer);
      if (seq->stream->cancelled()) {
        finish(*seq, {}, "cancelled");
        continue;
      }
      slot = std::move(seq);
    }
  }
  metrics_.set_queue(int64_t(queue_.size()), metrics_.running());
}

void BatchEngine::step() {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Transformer::SequenceStep> steps;
  std::vector<size_t> slot_of;
  // Decoding sequences first, one token each; then the prompts being read, in chunks within the budget.
  for (size_t i = 0; i < slots_.size(); ++i)
    if (Sequence* s = slots_[i].get(); s && !s->reading_prompt()) {
      steps.push_back({int64_t(i), s->n_past, &s->next, 1, s->job.model->forward_adapters()});
      slot_of.push_back(i);
    }
  int64_t budget = options_.step_tokens;
  for (size_t i = 0; i < slots_.size() && budget > 0; ++i)
    if (Sequence* s = slots_[i].get(); s && s->reading_prompt()) {
      const int64_t n = std::min<int64_t>(int64_t(s->job.prompt.size()) - s->n_past, budget);
      budget -= n;
      steps.push_back({int64_t(i), s->n_past, s->job.prompt.data() + s->n_past, n, s->job.model->forward_adapters()});
      slot_of.push_back(i);
    }
  // Rows of one adapter side by side: each adapter's low-rank products then run once over its rows.
  std::vector<size_t> order(steps.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::less<const ForwardAdapters*>()(steps[a].adapters, steps[b].adapters);
  });
  std::vector<Transformer::SequenceStep> sorted;
  for (size_t k : order) sorted.push_back(steps[k]);

  const Tensor* logits = nullptr;
  try {
    logits = &transformer_.forward_steps(sorted);
  } catch (const std::exception& e) {
    for (size_t k : order) {
      GenerationEvent last;
      last.error = e.what();
      finish(*slots_[slot_of[k]], std::move(last), "error");
      slots_[slot_of[k]].reset();
    }
    return;
  }
  int64_t generated = 0;
  const int64_t vocab = base_.config.vocab_size;
  for (size_t row = 0; row < sorted.size(); ++row) {
    const size_t slot = slot_of[order[row]];
    Sequence& seq = *slots_[slot];
    seq.n_past += sorted[row].n_tokens;
    if (seq.reading_prompt()) continue;
    ++generated;
    if (emit(seq, logits->f32() + int64_t(row) * vocab)) slots_[slot].reset();
  }
  metrics_.step(int64_t(sorted.size()), generated,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

namespace {

// log softmax of the chosen token and of the `top` most likely ones, from the raw logits (the model's
// distribution, before temperature and truncation, as OpenAI reports it).
TokenLogprob token_logprob(const float* logits, int64_t vocab, int32_t chosen, int top, const Tokenizer& tok) {
  const float max = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(logits[i] - max));
  const float log_z = max + float(std::log(sum));
  TokenLogprob lp{tok.token_bytes(chosen), logits[chosen] - log_z, {}};
  if (top > 0) {
    std::vector<int32_t> ids(static_cast<size_t>(vocab));
    std::iota(ids.begin(), ids.end(), 0);
    const int64_t n = std::min<int64_t>(top, vocab);
    std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int64_t i = 0; i < n; ++i) lp.top.push_back({tok.token_bytes(ids[size_t(i)]), logits[ids[size_t(i)]] - log_z});
  }
  return lp;
}

}  // namespace

bool BatchEngine::emit(Sequence& seq, const float* logits) {
  const Tokenizer& tok = *base_.tokenizer;
  const int64_t vocab = base_.config.vocab_size;
  const int32_t token = seq.sampler.sample(logits, vocab);
  ++seq.generated;
  GenerationEvent e;
  if (seq.job.logprobs >= 0) e.logprob = token_logprob(logits, vocab, token, seq.job.logprobs, tok);
  const bool end_token = !seq.job.ignore_eos && (token == tok.eos_id() ||
                         std::find(seq.job.stop_tokens.begin(), seq.job.stop_tokens.end(), token) != seq.job.stop_tokens.end());
  if (end_token) {
    e.text = seq.stop.add(seq.decoder.flush());
    if (!seq.stop.stopped()) e.text += seq.stop.finish();
    finish(seq, std::move(e), "stop");
    return true;
  }
  e.text = seq.stop.add(seq.decoder.feed(token));
  if (seq.stop.stopped()) {
    finish(seq, std::move(e), "stop");
    return true;
  }
  if (seq.generated >= seq.job.max_tokens) {
    e.text += seq.stop.add(seq.decoder.flush());
    if (!seq.stop.stopped()) e.text += seq.stop.finish();
    finish(seq, std::move(e), seq.stop.stopped() ? "stop" : "length");
    return true;
  }
  seq.next = token;
  seq.stream->push(std::move(e));
  return false;
}

void BatchEngine::finish(Sequence& seq, GenerationEvent last, const std::string& reason) {
  last.finish_reason = reason;
  last.prompt_tokens = int64_t(seq.job.prompt.size());
  last.completion_tokens = seq.generated;
  metrics_.request_finished(seq.job.model->name, reason, std::min<int64_t>(seq.n_past, last.prompt_tokens), seq.generated);
  seq.stream->push(std::move(last));
}

}  // namespace lora::serve
