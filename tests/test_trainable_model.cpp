// The whole-model training pass on small random models: loss equals the inference pass, gradients of
// every kind of trainable tensor match finite differences, checkpointing changes nothing.
#include <gtest/gtest.h>

#include <cmath>

#include "grad_check.h"
#include "kernels/cross_entropy.h"
#include "model/random_model.h"
#include "model/transformer.h"
#include "train/trainable_model.h"

namespace lora {
namespace {

ModelConfig tiny_config(bool bias, bool tied) {
  ModelConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  c.vocab_size = 23;
  c.max_position_embeddings = 64;
  c.attention_bias = bias;
  c.tie_word_embeddings = tied;
  return c;
}

struct Batch {
  int64_t B = 2, T = 5;
  std::vector<int32_t> tokens, targets;
  Batch() {
    tokens = {1, 5, 9, 3, 7, 1, 12, 4, 4, 20};
    targets = {5, 9, 3, 7, 11, kIgnoreIndex, kIgnoreIndex, 4, 20, 2};
  }
};

TEST(TrainableModel, LossEqualsInferencePassAndBaseIsUntouched) {
  const Model base = random_model(tiny_config(true, false), 3);
  const Tensor wq_before = base.weights.layers[0].wq.clone();
  LoraConfig cfg;
  cfg.target_modules = {"all-linear"};
  cfg.r = 4;
  TrainableModel m = TrainableModel::lora(base, cfg, 1);
  Batch b;
  const auto r = m.evaluate(b.tokens.data(), b.targets.data(), b.B, b.T);
  EXPECT_EQ(r.count, 8);

  Transformer t(base, b.B, b.T);
  const Tensor& logits = t.forward(b.tokens.data(), b.B, b.T, true);
  double want = 0;
  for (size_t i = 0; i < b.targets.size(); ++i)
    if (b.targets[i] != kIgnoreIndex) want += token_nll(logits.f32() + i * 23, 23, b.targets[i]);
  EXPECT_NEAR(r.loss_sum, want, 1e-4);  // B = 0: the adapted model is the base model

  m.zero_grad();
  m.forward_backward(b.tokens.data(), b.targets.data(), b.B, b.T, 1.0f);
  EXPECT_EQ(std::memcmp(wq_before.data(), base.weights.layers[0].wq.data(), wq_before.nbytes()), 0);
}

TEST(TrainableModel, PeftStyleReport) {
  const Model base = random_model(tiny_config(false, true), 3);
  LoraConfig cfg;
  cfg.target_modules = {"q_proj", "v_proj"};
  cfg.r = 2;
  TrainableModel m = TrainableModel::lora(base, cfg, 1);
  // per layer: q: A 2x16 + B 16x2 = 64; v: A 2x16 + B 8x2 = 48  -> 112 per layer, 224 in all
  EXPECT_EQ(m.trainable_parameter_count(), 224);
  EXPECT_EQ(m.all_parameter_count(), base.parameter_count() + 224);
  EXPECT_NE(m.trainable_report().find("trainable params: 224 || all params: "), std::string::npos) << m.trainable_report();
}

// Checks every gradient element of every param against central differences of the summed loss.
void expect_model_gradients(TrainableModel& m, const Batch& b, double tol) {
  m.zero_grad();
  m.forward_backward(b.tokens.data(), b.targets.data(), b.B, b.T, 1.0f);
  auto loss = [&] { return m.evaluate(b.tokens.data(), b.targets.data(), b.B, b.T).loss_sum; };
  for (Param& p : m.params()) {
    std::vector<float> grad(p.grad->f32(), p.grad->f32() + p.grad->numel());
    test::expect_gradient(p.value->f32(), size_t(p.value->numel()), grad.data(), loss, p.name.c_str(), 1e-2f, tol);
  }
}

TEST(TrainableModel, LoraGradientsOnEveryTargetKind) {
  const Model base = random_model(tiny_config(true, false), 5);
  LoraConfig cfg;
  cfg.target_modules = {"all-linear", "embed_tokens", "lm_head"};
  cfg.r = 2;
  cfg.lora_alpha = 4;
  cfg.init_lora_weights = "false";  // B random, so every gradient is nonzero
  cfg.bias = "all";
  cfg.rank_pattern = {{"down_proj", 3}};
  TrainableModel m = TrainableModel::lora(base, cfg, 2);
  expect_model_gradients(m, Batch(), 5e-3);
}

TEST(TrainableModel, ModulesToSaveAndRsLora) {
  const Model base = random_model(tiny_config(false, true), 6);
  LoraConfig cfg;
  cfg.target_modules = {"q_proj", "down_proj"};
  cfg.use_rslora = true;
  cfg.init_lora_weights = "false";
  cfg.modules_to_save = {"lm_head"};
  TrainableModel m = TrainableModel::lora(base, cfg, 2);
  EXPECT_FLOAT_EQ(m.slot(0, kQ).lora->scaling, 8.0f / std::sqrt(8.0f));
  expect_model_gradients(m, Batch(), 5e-3);
}

TEST(TrainableModel, FullAndFreezeGradients) {
  Model base = random_model(tiny_config(true, true), 7);
  // With N(0, 0.02) weights most gradients of a whole-weight fine-tune are ~1e-5, below what central
  // differences of an fp32 loss resolve; weights of unit-ish scale make every gradient measurable.
  auto scale = [](Tensor& t, float s) {
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] *= s;
  };
  scale(base.weights.tok_embeddings, 50.0f);
  for (LayerWeights& l : base.weights.layers)
    for (Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down, &l.bq, &l.bk, &l.bv}) scale(*t, 15.0f);
  TrainableModel full = TrainableModel::full(base);
  EXPECT_EQ(full.trainable_parameter_count(), base.parameter_count());
  expect_model_gradients(full, Batch(), 5e-3);
  TrainableModel frozen = TrainableModel::freeze(base, 1);
  for (const Param& p : frozen.params()) EXPECT_NE(p.name.find("layers.1."), std::string::npos) << p.name;
  expect_model_gradients(frozen, Batch(), 5e-3);
}

TEST(TrainableModel, GradientCheckpointingGivesTheSameGradients) {
  const Model base = random_model(tiny_config(true, false), 8);
  LoraConfig cfg;
  cfg.target_modules = {"all-linear"};
  cfg.init_lora_weights = "false";
  cfg.lora_dropout = 0.2f;  // the recomputed dropout masks must equal the first ones
  TrainableModel a = TrainableModel::lora(base, cfg, 3), b = TrainableModel::lora(base, cfg, 3);
  b.gradient_checkpointing = true;
  Batch batch;
  a.zero_grad();
  b.zero_grad();
  const auto ra = a.forward_backward(batch.tokens.data(), batch.targets.data(), batch.B, batch.T, 0.1f);
  const auto rb = b.forward_backward(batch.tokens.data(), batch.targets.data(), batch.B, batch.T, 0.1f);
  EXPECT_EQ(ra.loss_sum, rb.loss_sum);
  for (size_t i = 0; i < a.params().size(); ++i)
    ASSERT_EQ(std::memcmp(a.params()[i].grad->data(), b.params()[i].grad->data(), a.params()[i].grad->nbytes()), 0)
        << a.params()[i].name;
}

}  // namespace
}  // namespace lora

namespace lora {
namespace {

TEST(TrainableModel, PissaStartsFromTheBaseWithTheTopSingularTriplets) {
  const Model base = random_model(tiny_config(false, false), 9);
  LoraConfig cfg;
  cfg.target_modules = {"q_proj", "down_proj"};
  cfg.r = 3;
  cfg.lora_alpha = 6;
  cfg.init_lora_weights = "pissa";
  TrainableModel m = TrainableModel::lora(base, cfg, 1);
  // residual + s·B·A reproduces W
  const LinearSlot& q = m.slot(1, kQ);
  const Tensor delta = q.lora->delta_weight();
  const Tensor& w = base.weights.layers[1].wq;
  for (int64_t i = 0; i < w.numel(); ++i) EXPECT_NEAR(q.weight.f32()[i] + delta.f32()[i], w.f32()[i], 1e-6);
  // the adapted model computes what the base does
  Batch b;
  Transformer t(base, b.B, b.T);
  const Tensor& logits = t.forward(b.tokens.data(), b.B, b.T, true);
  double want = 0;
  for (size_t i = 0; i < b.targets.size(); ++i)
    if (b.targets[i] != kIgnoreIndex) want += token_nll(logits.f32() + i * 23, 23, b.targets[i]);
  EXPECT_NEAR(m.evaluate(b.tokens.data(), b.targets.data(), b.B, b.T).loss_sum, want, 1e-4);
  // s·B·A is the best rank-3 approximation: its residual is smaller than W's by the top singular values
  double res = 0, full = 0;
  for (int64_t i = 0; i < w.numel(); ++i) {
    res += double(q.weight.f32()[i]) * q.weight.f32()[i];
    full += double(w.f32()[i]) * w.f32()[i];
  }
  EXPECT_LT(res, full * 0.9);
}

}  // namespace
}  // namespace lora
