// The engine learns: a LoRA fine-tune of the real stories260K model on stories about a character the
// base model never names ("Zuzu") halves the training loss, greedy generation then tells of Zuzu, the
// base weights are bit-identical afterwards, and without the adapter the output is the base's exactly.
#include <gtest/gtest.h>

#include <sstream>

#include "adapters/merge.h"
#include "formats/model_loader.h"
#include "model/sampler.h"
#include "model/transformer.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "train/lr_schedule.h"
#include "train/optimizer.h"
#include "train/trainable_model.h"

namespace lora {
namespace {

std::string greedy(const Model& m, const std::string& prompt, int n) {
  std::vector<int32_t> ids = m.tokenizer->encode_for_model(prompt);
  Transformer t(m, 1, int64_t(ids.size()) + n);
  const Tensor* logits = &t.forward(ids.data(), 1, int64_t(ids.size()), false);
  const size_t n_prompt = ids.size();
  for (int i = 0; i < n; ++i) {
    const int32_t next = argmax(logits->f32(), m.config.vocab_size);
    if (next == m.tokenizer->eos_id()) break;
    ids.push_back(next);
    logits = &t.forward(&next, 1, 1, false);
  }
  // the continuation: the decoded whole minus the decoded prompt (keeps the space between them)
  const std::string all = m.tokenizer->decode(ids, true);
  ids.resize(n_prompt);
  return all.substr(m.tokenizer->decode(ids, true).size());
}

TEST(Learning, LoraTeachesStories260KANewCharacter) {
  const Model base = load_model(test::stories_bin());
  ASSERT_TRUE(base.tokenizer);
  std::vector<std::pair<const Tensor*, Tensor>> before;
  for (const LayerWeights& l : base.weights.layers)
    for (const Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down, &l.attn_norm, &l.ffn_norm})
      before.emplace_back(t, t->clone());
  before.emplace_back(&base.weights.tok_embeddings, base.weights.tok_embeddings.clone());

  const std::string prompt = "Once upon a time, there was a little";
  const std::string base_story = greedy(base, prompt, 40);
  ASSERT_EQ(base_story.find("Zuzu"), std::string::npos) << base_story;

  // One batch: every story, BOS first, padded to the longest; targets are the next tokens.
  std::istringstream lines(test::read_text(std::string(LORA_TEST_DATA_DIR) + "/zuzu_stories.txt"));
  std::vector<std::vector<int32_t>> stories;
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) stories.push_back(base.tokenizer->encode_for_model(line));
  int64_t T = 0;
  for (const auto& s : stories) T = std::max(T, int64_t(s.size()));
  const int64_t B = int64_t(stories.size());
  std::vector<int32_t> tokens(size_t(B * T), 0), targets(size_t(B * T), kIgnoreIndex);
  int64_t n_targets = 0;
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < stories[b].size(); ++t) {
      tokens[b * T + t] = stories[b][t];
      if (t + 1 < stories[b].size()) {
        targets[b * T + t] = stories[b][t + 1];
        ++n_targets;
      }
    }

  LoraConfig cfg;
  cfg.r = 8;
  cfg.lora_alpha = 16;
  cfg.target_modules = {"all-linear"};
  TrainableModel m = TrainableModel::lora(base, cfg, 7);
  AdamW opt(m.params(), AdamWConfig{});
  const int steps = 300;
  const LrSchedule schedule{"cosine", 1e-2, 10, steps};
  double first = 0, last = 0;
  for (int step = 0; step < steps; ++step) {
    m.zero_grad();
    const auto r = m.forward_backward(tokens.data(), targets.data(), B, T, 1.0f / float(n_targets));
    const double loss = r.loss_sum / double(r.count);
    if (step == 0) first = loss;
    last = loss;
    clip_grad_norm(m.params(), 1.0);
    opt.step(m.params(), float(schedule.at(step)));
  }
  std::printf("  training loss %.3f -> %.3f over %d steps\n", first, last, steps);
  EXPECT_LT(last, first / 2);

  const Model tuned = merged_model(m);
  const std::string story = greedy(tuned, prompt, 40);
  std::printf("  base:  %s%s\n  tuned: %s%s\n", prompt.c_str(), base_story.c_str(), prompt.c_str(), story.c_str());
  EXPECT_NE(story.find("Zuzu"), std::string::npos) << story;

  // the frozen base is untouched, and without the adapter the output is the base's, byte for byte
  for (const auto& [t, copy] : before) ASSERT_EQ(std::memcmp(t->data(), copy.data(), copy.nbytes()), 0);
  EXPECT_EQ(greedy(base, prompt, 40), base_story);
}

}  // namespace
}  // namespace lora
