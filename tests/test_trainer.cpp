// The training loop: exact resume, checkpoint layout and pruning, NaN handling, evaluation.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/model_loader.h"
#include "formats/safetensors.h"
#include "kernels/cross_entropy.h"
#include "model/family.h"
#include "model/random_model.h"
#include "test_util.h"
#include "train/trainer.h"

namespace lora {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

ModelConfig cfg() {
  ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 40;
  c.max_position_embeddings = 64;
  return c;
}

std::vector<TrainExample> data(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<TrainExample> out;
  for (int i = 0; i < n; ++i) {
    TrainExample e;
    const int len = 6 + int(rng() % 10);
    for (int t = 0; t < len; ++t) {
      e.input_ids.push_back(int32_t(1 + (t * 3 + i) % 39));
      e.labels.push_back(t < 3 ? kIgnoreIndex : e.input_ids.back());  // a "prompt" of 3 tokens
    }
    out.push_back(e);
  }
  return out;
}

LoraConfig lora_cfg() {
  LoraConfig c;
  c.r = 4;
  c.target_modules = {"all-linear"};
  c.lora_dropout = 0.1f;  // the dropout stream must resume too
  return c;
}

TrainingArguments args(const std::string& out, int64_t steps) {
  TrainingArguments a;
  a.output_dir = out;
  a.max_steps = steps;
  a.batch_size = 3;
  a.grad_accum = 2;
  a.learning_rate = 5e-3;
  a.warmup_steps = 3;
  a.logging_steps = 1;
  a.save_steps = 5;
  a.save_total_limit = 2;
  return a;
}

std::vector<Tensor> snapshot(TrainableModel& m) {
  std::vector<Tensor> v;
  for (const Param& p : m.params()) v.push_back(p.value->clone());
  return v;
}

TEST(Trainer, ResumeContinuesExactly) {
  const Model base = random_model(cfg(), 1);
  const auto train_set = data(17, 2);
  TempDir tmp;

  TrainableModel straight = TrainableModel::lora(base, lora_cfg(), 3);
  Trainer a(straight, args(tmp / "a", 20), train_set);
  ASSERT_TRUE(a.train());

  TrainableModel first = TrainableModel::lora(base, lora_cfg(), 3);
  Trainer b(first, args(tmp / "b", 20), train_set);
  b.on_step = [&](const StepLog& s) {
    if (s.step == 10) b.stop();
  };
  ASSERT_FALSE(b.train());
  ASSERT_TRUE(fs::exists(tmp / "b/checkpoint-10/adapter_model.safetensors"));

  TrainableModel resumed = TrainableModel::lora(base, lora_cfg(), 99);  // other init: the checkpoint decides
  Trainer c(resumed, args(tmp / "b", 20), train_set);
  ASSERT_TRUE(c.train(tmp / "b/checkpoint-10"));

  const auto want = snapshot(straight), got = snapshot(resumed);
  for (size_t i = 0; i < want.size(); ++i)
    for (int64_t j = 0; j < want[i].numel(); ++j) ASSERT_NEAR(got[i].f32()[j], want[i].f32()[j], 1e-6);
  ASSERT_EQ(a.history().size(), c.history().size());
  for (size_t i = 0; i < a.history().size(); ++i) EXPECT_EQ(a.history()[i].loss, c.history()[i].loss) << i;
  EXPECT_EQ(test::read_text(tmp / "a/metrics.jsonl").size() > 0, true);
  // The same loss log, line for line (tokens/s aside).
  auto losses = [](const std::string& path) {
    std::vector<double> v;
    std::istringstream in(test::read_text(path));
    for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line)["loss"].get<double>());
    return v;
  };
  EXPECT_EQ(losses(tmp / "a/metrics.jsonl"), losses(tmp / "b/metrics.jsonl"));

  // final adapter at the root; at most 2 checkpoints kept (save_total_limit)
  EXPECT_TRUE(fs::exists(tmp / "a/adapter_config.json"));
  EXPECT_TRUE(fs::exists(tmp / "a/adapter_model.safetensors"));
  int checkpoints = 0;
  for (const auto& e : fs::directory_iterator(tmp.path() + "/a")) checkpoints += e.path().filename().string().rfind("checkpoint-", 0) == 0;
  EXPECT_EQ(checkpoints, 2);
}

TEST(Trainer, FullFineTuningSavesModelFoldersAndResumesExactly) {
  const Model base = random_model(cfg(), 11);
  const auto train_set = data(13, 12);
  TempDir tmp;
  TrainingArguments a = args(tmp / "a", 12);
  a.save_steps = 6;
  TrainableModel straight = TrainableModel::full(base);
  Trainer ta(straight, a, train_set);
  ASSERT_TRUE(ta.train());

  TrainableModel first = TrainableModel::full(base);
  TrainingArguments b = args(tmp / "b", 12);
  b.save_steps = 6;
  Trainer tb(first, b, train_set);
  tb.on_step = [&](const StepLog& s) {
    if (s.step == 6) tb.stop();
  };
  ASSERT_FALSE(tb.train());
  // a checkpoint is a complete model folder (plus the optimizer state)
  const Model at6 = load_model(tmp / "b/checkpoint-6");
  EXPECT_EQ(at6.config.hidden_size, 32);
  TrainableModel resumed = TrainableModel::full(base);
  Trainer tc(resumed, b, train_set);
  ASSERT_TRUE(tc.train(tmp / "b/checkpoint-6"));
  const auto want = snapshot(straight), got = snapshot(resumed);
  for (size_t i = 0; i < want.size(); ++i)
    for (int64_t j = 0; j < want[i].numel(); ++j) ASSERT_NEAR(got[i].f32()[j], want[i].f32()[j], 1e-6) << straight.params()[i].name;

  // the output folder is the trained model: what it computes is what the trained weights compute
  const Model out = load_model(tmp / "b");
  const Tensor& wq = out.weights.layers[1].wq;
  const Tensor& trained = resumed.slot(1, kQ).weight;
  ASSERT_EQ(wq.shape(), trained.shape());
  for (int64_t i = 0; i < wq.numel(); ++i) ASSERT_EQ(wq.f32()[i], trained.f32()[i]);
  EXPECT_NE(std::memcmp(wq.data(), base.weights.layers[1].wq.data(), wq.nbytes()), 0);

  // resuming on other data is refused, naming the checkpoint's trainer state
  TrainableModel other = TrainableModel::full(base);
  Trainer td(other, b, data(14, 12));
  try {
    td.train(tmp / "b/checkpoint-6");
    FAIL() << "other data must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("trained on other data"), std::string::npos) << e.what();
  }
}

// Gemma's checkpoints hold the norm weights w of x̂·(1 + w); the model trains the factors: a full fine-tuning
// resumed from one continues exactly, and the saved folder loads back to the trained factors.
TEST(Trainer, FullFineTuningOfGemma3ResumesExactly) {
  ModelConfig c = cfg();
  apply_family(model_family("gemma3_text"), c);
  c.layer_types = {"sliding_attention", "full_attention"};
  const Model base = random_model(c, 11);
  const auto train_set = data(13, 12);
  TempDir tmp;
  TrainableModel straight = TrainableModel::full(base);
  Trainer ta(straight, args(tmp / "a", 12), train_set);
  ASSERT_TRUE(ta.train());
  TrainingArguments b = args(tmp / "b", 12);
  b.save_steps = 6;
  TrainableModel first = TrainableModel::full(base);
  Trainer tb(first, b, train_set);
  tb.on_step = [&](const StepLog& s) {
    if (s.step == 6) tb.stop();
  };
  ASSERT_FALSE(tb.train());
  TrainableModel resumed = TrainableModel::full(base);
  Trainer tc(resumed, b, train_set);
  ASSERT_TRUE(tc.train(tmp / "b/checkpoint-6"));
  const auto want = snapshot(straight), got = snapshot(resumed);
  for (size_t i = 0; i < want.size(); ++i)
    for (int64_t j = 0; j < want[i].numel(); ++j) ASSERT_NEAR(got[i].f32()[j], want[i].f32()[j], 1e-6) << straight.params()[i].name;
  const Model out = load_model(tmp / "b");
  for (const Param& p : resumed.params())
    if (p.name == "model.layers.1.post_feedforward_layernorm.weight")
      for (int64_t j = 0; j < p.value->numel(); ++j)
        ASSERT_EQ(out.weights.layers[1].post_ffn_norm.f32()[j], p.value->f32()[j]);
}

TEST(Trainer, NanLossStopsAndKeepsTheLastCheckpoint) {
  const Model base = random_model(cfg(), 4);
  TempDir tmp;
  TrainableModel m = TrainableModel::lora(base, lora_cfg(), 5);
  Trainer t(m, args(tmp / "run", 20), data(12, 6));
  t.on_step = [&](const StepLog& s) {
    if (s.step == 7) m.params()[0].value->f32()[0] = std::nanf("");  // corrupt a weight after the checkpoint at 5
  };
  try {
    t.train();
    FAIL() << "a NaN loss must stop the run";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("at step 8"), std::string::npos) << e.what();
  }
  const SafetensorsFile ckpt = SafetensorsFile::open(tmp / "run/checkpoint-5/adapter_model.safetensors");
  for (const auto& info : ckpt.tensors()) {
    const Tensor v = ckpt.load(info.name);
    for (int64_t i = 0; i < v.numel(); ++i) ASSERT_TRUE(std::isfinite(v.f32()[i]));
  }
  EXPECT_FALSE(fs::exists(tmp / "run/adapter_model.safetensors"));  // no final adapter from a failed run
}

TEST(Trainer, EvaluationAndLearning) {
  const Model base = random_model(cfg(), 7);
  TempDir tmp;
  // A random model's lm_head rows are N(0, 0.02): after the final RMSNorm its logits cannot leave ±0.7,
  // so the head gets an adapter too, or no adapter elsewhere could lower the loss much.
  LoraConfig c = lora_cfg();
  c.target_modules.push_back("lm_head");
  TrainableModel m = TrainableModel::lora(base, c, 8);
  const auto train_set = data(12, 9);
  TrainingArguments a = args(tmp / "run", 40);
  a.learning_rate = 2e-2;
  a.eval_steps = 10;
  Trainer t(m, a, train_set, train_set);
  const EvalResult before = t.evaluate(train_set);
  int evals = 0;
  t.on_eval = [&](int64_t, const EvalResult&) { ++evals; };
  ASSERT_TRUE(t.train());
  const EvalResult after = t.evaluate(train_set);
  EXPECT_EQ(evals, 4);
  EXPECT_LT(after.loss, before.loss * 0.7);
  EXPECT_NEAR(after.perplexity, std::exp(after.loss), 1e-9);
  int64_t labelled = 0;
  for (const auto& e : train_set)
    for (size_t i = 1; i < e.labels.size(); ++i) labelled += e.labels[i] != kIgnoreIndex;
  EXPECT_EQ(after.tokens, labelled);
}

}  // namespace
}  // namespace lora

#include "train/loss_plot.h"

namespace lora {
namespace {

TEST(LossPlot, WritesAPngAndSmoothsLikeLlamaFactory) {
  LossCurve c;
  for (int s = 1; s <= 200; ++s) c.train.emplace_back(s, 3.0 * std::exp(-s / 60.0) + 0.3 + 0.2 * std::sin(s * 1.7));
  for (int s = 50; s <= 200; s += 50) c.eval.emplace_back(s, 3.0 * std::exp(-s / 60.0) + 0.45);
  test::TempDir tmp;
  plot_loss_png(c, tmp / "training_loss.png");
  const std::string png = test::read_text(tmp / "training_loss.png");
  ASSERT_GT(png.size(), 5000u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // smoothing: weight 1.8 * (sigmoid(0.05 n) - 0.5); for n = 3: w = 0.0674...
  const auto sm = smooth_loss({1.0, 2.0, 3.0});
  const double w = 1.8 * (1.0 / (1.0 + std::exp(-0.15)) - 0.5);
  EXPECT_NEAR(sm[1], w * 1.0 + (1 - w) * 2.0, 1e-12);
  EXPECT_NEAR(sm[2], w * sm[1] + (1 - w) * 3.0, 1e-12);
}

}  // namespace
}  // namespace lora
