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
#include "zuzu_batch.h"
#include "tokenizer/tokenizer.h"
#include "train/lr_schedule.h"
#include "train/optimizer.h"
#include "train/trainable_model.h"

namespace lora {
namespace {

using test::greedy;

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

  const test::StoriesBatch batch = test::zuzu_batch(*base.tokenizer);
  LoraConfig cfg;
  cfg.r = 8;
  cfg.lora_alpha = 16;
  cfg.target_modules = {"all-linear"};
  TrainableModel m = TrainableModel::lora(base, cfg, 7);
  const int steps = 300;
  const auto [first, last] = test::fine_tune_on(m, batch, steps);
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
