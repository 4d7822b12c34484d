// Several adapters on one base model: switching back and forth, disabling (the base's output byte for
// byte), several active at once (summed, as the PyTorch oracle sums them), naming and unloading. The base
// weights are never modified.
#include <gtest/gtest.h>

#include "adapter_test_util.h"
#include "adapters/adapter_io.h"
#include "adapters/merge.h"
#include "adapters/trainable_adapter.h"
#include "core/error.h"
#include "formats/model_loader.h"
#include "model/sampler.h"

namespace lora {
namespace {

using test::TempDir;

std::vector<int32_t> greedy(const Model& m, const ForwardAdapters* adapters, int n) {
  Transformer t(m, 1, n + 1);
  t.set_adapters(adapters);
  std::vector<int32_t> out = {1};
  const Tensor* logits = &t.forward(out.data(), 1, 1, false);
  for (int i = 0; i < n; ++i) {
    out.push_back(argmax(logits->f32(), m.config.vocab_size));
    logits = &t.forward(&out.back(), 1, 1, false);
  }
  return out;
}

std::vector<Tensor> snapshot(const Model& m) {
  std::vector<Tensor> all = {m.weights.tok_embeddings.clone(), m.weights.norm.clone(), m.weights.lm_head.clone()};
  for (const LayerWeights& l : m.weights.layers)
    for (const Tensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down})
      all.push_back(t->clone());
  return all;
}

TEST(AdapterSet, TwoAdaptersSwitchBackAndForthAndDisablingGivesTheBaseByteForByte) {
  const Model base = load_model(test::stories_bin());
  const std::vector<Tensor> before = snapshot(base);
  LoraConfig ca;
  ca.r = 4, ca.lora_alpha = 8, ca.target_modules = {"all-linear"};
  LoraConfig cb;
  cb.r = 8, cb.lora_alpha = 8, cb.target_modules = {"q_proj", "v_proj", "embed_tokens"};
  TrainableModel ta = test::train_on_stories(base, ca, 15, 1), tb = test::train_on_stories(base, cb, 15, 2);
  TempDir tmp;
  test::make_fixture(test::stories_bin(), tmp / "dora", "dora", 3);

  const std::vector<int32_t> tokens = test::sample_tokens(2, 40, 512, 4);
  const std::vector<float> base_logits = test::logits_of(base, nullptr, tokens, 2, 40);
  const std::vector<int32_t> base_story = greedy(base, nullptr, 30);

  AdapterSet set(base);
  const std::string a = set.add(adapter_from_trainable(ta), "zuzu-a");
  const std::string b = set.add(adapter_from_trainable(tb), "zuzu-b");
  const std::string d = set.load(tmp / "dora");
  EXPECT_EQ(set.names(), (std::vector<std::string>{"zuzu-a", "zuzu-b", "dora"}));
  EXPECT_TRUE(test::bit_identical(test::logits_of(base, &set, tokens, 2, 40), base_logits));  // loaded, none active

  std::map<std::string, std::vector<float>> first;
  std::map<std::string, std::vector<int32_t>> story;
  for (int round = 0; round < 3; ++round)
    for (const std::string& name : {a, b, d, std::string()}) {
      if (name.empty()) set.disable_all();
      else set.activate(name);
      const std::vector<float> l = test::logits_of(base, &set, tokens, 2, 40);
      const std::vector<int32_t> s = greedy(base, &set, 30);
      if (round == 0) {
        first[name] = l, story[name] = s;
      } else {
        EXPECT_TRUE(test::bit_identical(l, first[name])) << name << " round " << round;
        EXPECT_EQ(s, story[name]) << name;
      }
    }
  EXPECT_TRUE(test::bit_identical(first[""], base_logits));  // disabled: the base, byte for byte
  EXPECT_EQ(story[""], base_story);
  for (const std::string& x : {a, b, d})
    for (const std::string& y : {a, b, d, std::string()})
      if (x != y) {
        EXPECT_GT(test::max_abs_diff(first[x], first[y]), 1e-2) << x << " vs " << y;
      }

  // Each adapter's on-the-fly output is its trained model's (TrainableModel) and its merged model's.
  set.activate(a);
  EXPECT_LT(test::scaled_diff(test::logits_of(merged_model(ta), nullptr, tokens, 2, 40), first[a]), 1e-5);
  EXPECT_LT(test::scaled_diff(test::logits_of(merged_model(set), nullptr, tokens, 2, 40), first[a]), 1e-5);

  const std::vector<Tensor> after = snapshot(base);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_EQ(std::memcmp(before[i].data(), after[i].data(), before[i].nbytes()), 0) << i;
}

TEST(AdapterSet, ActiveAdaptersAreSummedAsPyTorchSumsThem) {
  LoadOptions o;
  o.load_tokenizer = false;
  const Model base = load_model(test::stories_bin(), o);
  TempDir tmp;
  test::make_fixture(test::stories_bin(), tmp / "plain", "plain", 21);
  test::make_fixture(test::stories_bin(), tmp / "dora", "dora", 22);
  test::make_fixture(test::stories_bin(), tmp / "rs", "rslora", 23);
  AdapterSet set(base);
  set.activate({{set.load(tmp / "plain"), 1.0f}, {set.load(tmp / "dora"), 0.5f}, {set.load(tmp / "rs"), -1.0f}});
  const std::vector<int32_t> tokens = test::sample_tokens(2, 24, 512, 24);
  const std::vector<float> got = test::logits_of(base, &set, tokens, 2, 24);
  const std::vector<float> want =
      test::oracle_logits(test::stories_bin(), {tmp / "plain", tmp / "dora" + ":0.5", tmp / "rs" + ":-1"}, tokens, 24);
  const double diff = test::max_abs_diff(got, want);
  std::printf("  three adapters (1, 0.5 DoRA, -1 rsLoRA): max |logit diff| vs PyTorch = %.3g\n", diff);
  EXPECT_LT(diff, 1e-4);
  // folded into one model: the same
  EXPECT_LT(test::scaled_diff(test::logits_of(merged_model(set), nullptr, tokens, 2, 24), got), 1e-5);
  // one at a time is not the same as all together
  set.activate(std::string("plain"));
  EXPECT_GT(test::max_abs_diff(test::logits_of(base, &set, tokens, 2, 24), got), 1e-2);
}

TEST(AdapterSet, NamesSelectionsAndUnloading) {
  LoadOptions o;
  o.load_tokenizer = false;
  const Model base = load_model(test::stories_bin(), o);
  TempDir tmp;
  test::make_fixture(test::stories_bin(), tmp / "x", "plain", 31);
  test::make_fixture(test::stories_bin(), tmp / "lm", "lora", 32);  // replaces lm_head (modules_to_save)
  test::make_fixture(test::stories_bin(), tmp / "lm2", "lora", 33);
  AdapterSet set(base);
  EXPECT_EQ(set.load(tmp / "x"), "x");
  EXPECT_EQ(set.load(tmp / "x/"), "x-2");  // the same folder again gets a fresh name
  EXPECT_THROW(set.load(tmp / "x", "x"), Error);
  EXPECT_EQ(set.load(tmp / "lm"), "lm");
  EXPECT_EQ(set.load(tmp / "lm2"), "lm2");

  const std::vector<int32_t> tokens = test::sample_tokens(1, 16, 512, 34);
  set.activate({{"x", 1.0f}, {"x-2", 1.0f}});
  const std::vector<float> twice = test::logits_of(base, &set, tokens, 1, 16);
  set.activate("x", 2.0f);  // two copies at scale 1 = one at scale 2
  EXPECT_LT(test::max_abs_diff(test::logits_of(base, &set, tokens, 1, 16), twice), 1e-4);

  auto error_mentions = [&](const std::function<void()>& f, const std::string& m) {
    try {
      f();
      ADD_FAILURE() << "expected an error mentioning " << m;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(m), std::string::npos) << e.what();
    }
  };
  error_mentions([&] { set.activate("nope"); }, "no adapter named 'nope' is loaded (loaded: x, x-2, lm, lm2)");
  error_mentions([&] { set.activate({{"x", 1.0f}, {"x", 1.0f}}); }, "selected twice");
  error_mentions([&] { set.activate("lm", 0.5f); }, "cannot be scaled");
  error_mentions([&] { set.activate({{"lm", 1.0f}, {"lm2", 1.0f}}); }, "both replace lm_head");
  // a refused selection leaves the previous one in place
  EXPECT_EQ(set.active_adapters().size(), 1u);
  EXPECT_EQ(set.active_adapters()[0].name, "x");
  EXPECT_EQ(set.active_adapters()[0].scale, 2.0f);

  set.activate({{"lm", 1.0f}, {"x", 1.0f}});  // a replaced lm_head plus another adapter's LoRA
  EXPECT_NE(set.lm_head_weight(), nullptr);
  set.unload("lm");  // active: deactivated, the rest stays active
  EXPECT_EQ(set.names(), (std::vector<std::string>{"x", "x-2", "lm2"}));
  ASSERT_EQ(set.active_adapters().size(), 1u);
  EXPECT_EQ(set.lm_head_weight(), nullptr);
  set.activate("x");
  EXPECT_THROW(set.unload("lm"), Error);

  const Model other = load_model(test::stories_gguf(), o);
  Transformer t(other, 1, 8);
  EXPECT_THROW(t.set_adapters(&set), Error);  // built for another model
}

}  // namespace
}  // namespace lora
