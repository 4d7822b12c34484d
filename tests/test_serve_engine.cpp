// lora serve's engine without HTTP: Transformer::forward_steps (sequences at their own positions, each
// through its own adapter, in one batch) against each sequence run alone; the batch engine's continuous
// batching against one request at a time; cancellation, queue limits and shutdown.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "adapter_test_util.h"
#include "formats/model_loader.h"
#include "serve/api_error.h"
#include "serve/batch_engine.h"
#include "serve/served_models.h"
#include "serve_test_util.h"

namespace lora {
namespace {

using serve::BatchEngine;
using serve::EngineOptions;
using serve::GenerationEvent;
using serve::GenerationJob;
using serve::GenerationStream;
using serve::ServedModels;
using test::TempDir;

// stories260K with two LoRA adapters trained for real on the Zuzu stories, saved as PEFT folders and
// served as "zuzu" and "qv" (serve_test_util.h).
class ServeEngine : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = new Model(load_model(test::stories_bin()));
    dir_ = new TempDir();
    test::save_serve_adapters(*base_, *dir_);
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete base_;
  }
  void SetUp() override {
    models_ = std::make_unique<ServedModels>(*base_, "stories", test::stories_bin(), "alpaca",
                                             [](const std::string&) { return std::string("alpaca"); });
    models_->load("zuzu", *dir_ / "zuzu");
    models_->load("qv", *dir_ / "qv");
  }

  GenerationJob greedy_job(const std::string& model, const std::string& prompt, int64_t max_tokens) const {
    GenerationJob job;
    job.model = models_->find(model);
    job.prompt = base_->tokenizer->encode_for_model(prompt);
    job.continues_prompt = true;
    job.sampling.temperature = 0;
    job.max_tokens = max_tokens;
    return job;
  }

  // What `lora generate --temp 0` prints after the prompt: the sequence run alone, prompt at once.
  std::string generate_alone(const std::string& model, const std::string& prompt, int64_t max_tokens) const {
    const auto m = models_->find(model);
    const std::vector<int32_t> ids = base_->tokenizer->encode_for_model(prompt);
    Transformer t(*base_, 1, int64_t(ids.size()) + max_tokens);
    t.set_adapters(m->forward_adapters());
    StreamDecoder decoder(*base_->tokenizer);
    decoder.feed(ids.back());
    std::string text;
    const Tensor* logits = &t.forward(ids.data(), 1, int64_t(ids.size()), false);
    for (int64_t n = 0; n < max_tokens; ++n) {
      const int32_t next = argmax(logits->f32(), base_->config.vocab_size);
      if (next == base_->tokenizer->eos_id()) break;
      text += decoder.feed(next);
      if (n + 1 < max_tokens) logits = &t.forward(&next, 1, 1, false);
    }
    return text + decoder.flush();
  }

  static std::string collect(GenerationStream& s, std::string* finish = nullptr) {
    std::string text;
    for (;;) {
      std::optional<GenerationEvent> e = s.next(std::chrono::milliseconds(100));
      if (!e) continue;
      text += e->text;
      if (e->last()) {
        if (finish) *finish = e->finish_reason;
        return text;
      }
    }
  }

  static Model* base_;
  static TempDir* dir_;
  std::unique_ptr<ServedModels> models_;
};
Model* ServeEngine::base_ = nullptr;
TempDir* ServeEngine::dir_ = nullptr;

TEST_F(ServeEngine, ForwardStepsWithMixedAdaptersMatchesEachSequenceAlone) {
  const int64_t vocab = base_->config.vocab_size;
  const std::vector<std::string> names = {"zuzu", "stories", "qv"};
  const std::vector<int32_t> tokens = test::sample_tokens(3, 24, int32_t(vocab), 5);
  // Alone: each sequence's whole prompt at once, then its logits after every position.
  std::vector<std::vector<float>> alone;
  for (size_t s = 0; s < 3; ++s) {
    Transformer t(*base_, 1, 24);
    t.set_adapters(models_->find(names[s])->forward_adapters());
    const Tensor& l = t.forward(tokens.data() + s * 24, 1, 24, true);
    alone.emplace_back(l.f32(), l.f32() + l.numel());
  }
  // Batched, in slots 2, 0, 1, at different positions: sequence 0 reads its prompt in chunks of 7 while the
  // others go one token a step, so each step mixes a prompt chunk and decoding rows of three adapters.
  Transformer batch(*base_, 3, 24);
  const int64_t slot[3] = {2, 0, 1};
  int64_t pos[3] = {0, 0, 0};
  std::vector<std::vector<float>> batched(3);
  while (pos[0] < 24 || pos[1] < 24 || pos[2] < 24) {
    std::vector<Transformer::SequenceStep> steps;
    std::vector<size_t> which;
    for (size_t s = 0; s < 3; ++s) {
      if (pos[s] >= 24) continue;
      const int64_t n = s == 0 ? std::min<int64_t>(7, 24 - pos[s]) : 1;
      steps.push_back({slot[s], pos[s], tokens.data() + s * 24 + pos[s], n, models_->find(names[s])->forward_adapters()});
      which.push_back(s);
    }
    const Tensor& l = batch.forward_steps(steps);
    for (size_t k = 0; k < steps.size(); ++k) {
      const size_t s = which[k];
      pos[s] += steps[k].n_tokens;
      // compare the last row of this step with the alone run's row at the same position
      const float* row = l.f32() + int64_t(k) * vocab;
      const float* ref = alone[s].data() + (pos[s] - 1) * vocab;
      batched[s].insert(batched[s].end(), row, row + vocab);
      std::vector<float> a(row, row + vocab), b(ref, ref + vocab);
      EXPECT_LT(test::scaled_diff(a, b), 2e-6) << names[s] << " at position " << pos[s] - 1;
      EXPECT_EQ(argmax(row, vocab), argmax(ref, vocab)) << names[s] << " at position " << pos[s] - 1;
    }
  }
  // The adapters matter: the same tokens through the base give other logits.
  Transformer plain(*base_, 1, 24);
  const Tensor& l = plain.forward(tokens.data(), 1, 24, true);
  EXPECT_GT(test::max_abs_diff(std::vector<float>(l.f32(), l.f32() + l.numel()), alone[0]), 1e-2);
}

TEST_F(ServeEngine, MixedAdapterBatchGivesTheTextsOfOneRequestAtATime) {
  const std::vector<std::pair<std::string, std::string>> requests = {
      {"zuzu", "Once upon a time"}, {"stories", "Once upon a time"}, {"qv", "Once upon a time"},
      {"zuzu", "The little dog"},   {"qv", "Lily wanted to"},       {"stories", "One day, a girl"}};
  const int64_t n = 40;
  std::vector<std::string> alone, one_slot, batched;
  for (const auto& [model, prompt] : requests) alone.push_back(generate_alone(model, prompt, n));
  {
    serve::Metrics metrics;
    BatchEngine engine(*base_, EngineOptions{.parallel = 1, .ctx = 128}, metrics);
    for (const auto& [model, prompt] : requests) one_slot.push_back(collect(*engine.submit(greedy_job(model, prompt, n))));
  }
  serve::Metrics metrics;
  {
    // All six at once in four slots: they join the batch as slots free up, prompts read 5 tokens a step.
    BatchEngine engine(*base_, EngineOptions{.parallel = 4, .ctx = 128, .step_tokens = 5}, metrics);
    std::vector<std::shared_ptr<GenerationStream>> streams;
    for (const auto& [model, prompt] : requests) streams.push_back(engine.submit(greedy_job(model, prompt, n)));
    for (auto& s : streams) batched.push_back(collect(*s));
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_FALSE(alone[i].empty());
    EXPECT_EQ(one_slot[i], alone[i]) << requests[i].first << ": " << requests[i].second;
    EXPECT_EQ(batched[i], alone[i]) << requests[i].first << ": " << requests[i].second;
  }
  EXPECT_NE(alone[0], alone[1]);  // zuzu and the base tell the same prompt differently
  EXPECT_NE(alone[2], alone[1]);
  const std::string text = metrics.prometheus();
  EXPECT_NE(text.find("lora_requests_total{model=\"zuzu\""), std::string::npos) << text;
  EXPECT_NE(text.find("lora_running_requests 0"), std::string::npos) << text;
}

TEST_F(ServeEngine, StopStringsEndTheReplyBeforeThem) {
  const std::string full = generate_alone("stories", "Once upon a time", 40);
  ASSERT_GT(full.size(), 20u);
  const std::string stop = full.substr(10, 4);  // four characters from inside the reply
  serve::Metrics metrics;
  BatchEngine engine(*base_, EngineOptions{.parallel = 2, .ctx = 128}, metrics);
  GenerationJob job = greedy_job("stories", "Once upon a time", 40);
  job.stop = {stop};
  std::string finish;
  const std::string text = collect(*engine.submit(job), &finish);
  EXPECT_EQ(finish, "stop");
  EXPECT_EQ(text, full.substr(0, full.find(stop)));
}

TEST_F(ServeEngine, CancellingFreesTheSlotForTheNextRequest) {
  // (An AdapterSet serves one thread: the engine's. What a request should give is computed before.)
  const std::string expected = generate_alone("qv", "Once upon a time", 20);
  serve::Metrics metrics;
  BatchEngine engine(*base_, EngineOptions{.parallel = 1, .ctx = 512}, metrics);
  GenerationJob endless = greedy_job("zuzu", "Once upon a time", 400);
  endless.ignore_eos = true;
  auto first = engine.submit(endless);
  auto second = engine.submit(greedy_job("qv", "Once upon a time", 20));
  ASSERT_TRUE(first->next(std::chrono::seconds(10)).has_value());  // it runs
  first->cancel();
  std::string finish;
  collect(*first, &finish);
  EXPECT_EQ(finish, "cancelled");
  EXPECT_EQ(collect(*second), expected);
  EXPECT_EQ(metrics.cancelled(), 1);
}

TEST_F(ServeEngine, FullQueueIs429LongPromptIs400AndShutdownCancelsAfterTheGrace) {
  serve::Metrics metrics;
  BatchEngine engine(*base_, EngineOptions{.parallel = 1, .ctx = 512, .max_queue = 1}, metrics);
  GenerationJob endless = greedy_job("stories", "Once upon a time", 500);
  endless.ignore_eos = true;
  auto running = engine.submit(endless);
  ASSERT_TRUE(running->next(std::chrono::seconds(10)).has_value());  // holds the only slot
  auto queued = engine.submit(endless);
  try {
    engine.submit(endless);
    ADD_FAILURE() << "a third request found room";
  } catch (const serve::ApiError& e) {
    EXPECT_EQ(e.status, 429);
  }
  GenerationJob too_long = greedy_job("stories", "Once upon a time", 10);
  too_long.prompt.assign(512, 5);
  try {
    engine.submit(too_long);
    ADD_FAILURE() << "a prompt as long as the context was taken";
  } catch (const serve::ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "context_length_exceeded");
  }
  running->cancel();
  engine.shutdown(std::chrono::milliseconds(0));  // the queued one is cancelled, not run
  std::string finish;
  collect(*queued, &finish);
  EXPECT_EQ(finish, "cancelled");
  try {
    engine.submit(endless);
    ADD_FAILURE() << "a stopped engine took a request";
  } catch (const serve::ApiError& e) {
    EXPECT_EQ(e.status, 503);
  }
}

TEST_F(ServeEngine, UnloadingAnAdapterLetsItsRunningRequestsFinish) {
  serve::Metrics metrics;
  BatchEngine engine(*base_, EngineOptions{.parallel = 2, .ctx = 128}, metrics);
  const std::string expected = generate_alone("qv", "Once upon a time", 40);
  auto stream = engine.submit(greedy_job("qv", "Once upon a time", 40));
  models_->unload("qv");
  EXPECT_EQ(models_->find("qv"), nullptr);
  EXPECT_EQ(collect(*stream), expected);
  models_->load("qv", *dir_ / "qv");  // and back, under the same name
  EXPECT_EQ(collect(*engine.submit(greedy_job("qv", "Once upon a time", 40))), expected);
  try {
    models_->unload("stories");
    ADD_FAILURE();
  } catch (const serve::ApiError& e) {
    EXPECT_EQ(e.status, 400);
  }
  try {
    models_->load("broken", *dir_ / "missing");
    ADD_FAILURE();
  } catch (const serve::ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lora
