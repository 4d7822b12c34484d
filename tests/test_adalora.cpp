// AdaLoRA: the SVD-shaped layer's gradients by finite differences, the orthogonal regularizer, the
// budget schedule and the importance scores against hand-computed values, masking to the exact budget,
// and a run on stories260K that ends at target_r per matrix, saves a PEFT AdaLoRA adapter sliced to the
// kept triplets, reloads it with the same logits, and resumes exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "adapters/adapter_io.h"
#include "adapters/adapter_set.h"
#include "adapters/merge.h"
#include "core/error.h"
#include "adapters/peft_io.h"
#include "formats/model_loader.h"
#include "formats/safetensors.h"
#include "grad_check.h"
#include "kernels/cross_entropy.h"
#include "model/transformer.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "train/adalora.h"
#include "train/rank_report.h"
#include "train/trainer.h"

namespace lora {
namespace {

using test::expect_gradient;
using test::randn;
using test::TempDir;

Tensor tensor_from(const std::vector<float>& v, std::vector<int64_t> shape) {
  Tensor t(DType::F32, std::move(shape));
  std::copy(v.begin(), v.end(), t.f32());
  return t;
}

// ---- the layer: y = W x + b + s · B (E ⊙ A dropout(x))

void check_layer_gradients(float dropout) {
  const int64_t n = 3, in = 6, out = 5, r = 3;
  LoraLinear l("layer", in, out, r, 0.7f, dropout, false);
  l.add_singular_values();
  std::copy_n(randn(size_t(r * in), 4).begin(), r * in, l.lora_a.f32());
  std::copy_n(randn(size_t(out * r), 5).begin(), out * r, l.lora_b.f32());
  std::copy_n(randn(size_t(r), 6).begin(), r, l.lora_e.f32());
  Tensor x = tensor_from(randn(size_t(n * in), 1), {n, in});
  Tensor w = tensor_from(randn(size_t(out * in), 2, 0.5f), {out, in});
  const std::vector<float> dyv = randn(size_t(n * out), 7);
  const LinearParams p{&w, nullptr, &l, nullptr, nullptr};
  auto loss = [&] {
    Tensor y(DType::F32, {n, out});
    std::mt19937_64 rng(99);
    adapted_linear_forward(p, x, y, nullptr, &rng);
    return test::dot(y.f32(), dyv.data(), dyv.size());
  };

  // forward against the formula, without dropout
  if (dropout == 0.0f) {
    Tensor y(DType::F32, {n, out});
    adapted_linear_forward(p, x, y, nullptr, nullptr);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out; ++o) {
        double want = 0;
        for (int64_t j = 0; j < in; ++j) {
          double delta = 0;
          for (int64_t k = 0; k < r; ++k)
            delta += double(l.lora_b.f32()[o * r + k]) * l.lora_e.f32()[k] * l.lora_a.f32()[k * in + j];
          want += (w.f32()[o * in + j] + 0.7 * delta) * x.f32()[i * in + j];
        }
        EXPECT_NEAR(y.f32()[i * out + o], want, 1e-5);
      }
  }

  Tensor y(DType::F32, {n, out}), dx(DType::F32, {n, in});
  LinearSaved saved;
  std::mt19937_64 rng(99);
  adapted_linear_forward(p, x, y, &saved, &rng);
  adapted_linear_backward(p, x, tensor_from(dyv, {n, out}), saved, dx, false);
  expect_gradient(x.f32(), size_t(x.numel()), dx.f32(), loss, "dx");
  expect_gradient(l.lora_a.f32(), size_t(l.lora_a.numel()), l.grad_a.f32(), loss, "dA");
  expect_gradient(l.lora_e.f32(), size_t(l.lora_e.numel()), l.grad_e.f32(), loss, "dE");
  expect_gradient(l.lora_b.f32(), size_t(l.lora_b.numel()), l.grad_b.f32(), loss, "dB");

  // the same update as a plain LoRA with E folded into A (what inference and GGUF export use)
  l.lora_e.f32()[1] = 0.0f;  // a pruned triplet is dropped
  const LoraLinear f = l.folded();
  EXPECT_EQ(f.r, r - 1);
  const Tensor d1 = l.delta_weight(), d2 = f.delta_weight();
  for (int64_t i = 0; i < d1.numel(); ++i) EXPECT_NEAR(d1.f32()[i], d2.f32()[i], 1e-6);
}

TEST(AdaLora, LayerGradientsMatchFiniteDifferences) { check_layer_gradients(0.0f); }
TEST(AdaLora, LayerGradientsWithDropout) { check_layer_gradients(0.3f); }

// ---- the model-level pieces on stories260K

Model stories() { return load_model(test::stories_bin()); }

LoraConfig adalora_config(int64_t init_r, int64_t target_r, int64_t total_step) {
  LoraConfig c;
  c.lora_alpha = 16;
  c.target_modules = {"all-linear"};
  c.adalora = AdaLoraOptions{};
  c.adalora->init_r = init_r;
  c.adalora->target_r = target_r;
  c.adalora->total_step = total_step;
  return c;
}

TEST(AdaLora, StartsFromTheBaseWithPeftInitAndKeys) {
  const Model base = stories();
  TrainableModel m = TrainableModel::lora(base, adalora_config(6, 2, 100), 1);
  ASSERT_EQ(m.lora_layers().size(), 35u);  // 5 layers x 7 projections
  for (LoraLinear* l : m.lora_layers()) {
    EXPECT_EQ(l->r, 6);
    EXPECT_NEAR(l->scaling, 16.0 / (6 + 1e-5), 1e-6);
    for (int64_t k = 0; k < 6; ++k) EXPECT_EQ(l->lora_e.f32()[k], 0.0f);
    double ss = 0;
    for (int64_t i = 0; i < l->lora_a.numel(); ++i) ss += double(l->lora_a.f32()[i]) * l->lora_a.f32()[i];
    EXPECT_NEAR(std::sqrt(ss / double(l->lora_a.numel())), 0.02, 0.004);  // A ~ N(0, 0.02²)
  }
  std::set<std::string> names;
  for (const Param& p : m.params()) names.insert(p.name);
  EXPECT_TRUE(names.count("base_model.model.model.layers.0.self_attn.q_proj.lora_A"));
  EXPECT_TRUE(names.count("base_model.model.model.layers.0.self_attn.q_proj.lora_E"));
  EXPECT_TRUE(names.count("base_model.model.model.layers.4.mlp.down_proj.lora_B"));
  EXPECT_EQ(names.size(), 105u);

  // E = 0: the adapted model computes exactly what the base computes
  std::vector<int32_t> tokens = base.tokenizer->encode_for_model("Once upon a time, a cat sat.");
  std::vector<int32_t> targets(tokens.size(), kIgnoreIndex);
  for (size_t i = 0; i + 1 < tokens.size(); ++i) targets[i] = tokens[i + 1];
  TrainableModel plain = TrainableModel::full(base);
  const auto a = m.evaluate(tokens.data(), targets.data(), 1, int64_t(tokens.size()));
  const auto b = plain.evaluate(tokens.data(), targets.data(), 1, int64_t(tokens.size()));
  EXPECT_EQ(a.loss_sum, b.loss_sum);

  // PEFT refuses what AdaLoRA cannot do
  LoraConfig bad = adalora_config(6, 2, 100);
  bad.use_dora = true;
  EXPECT_THROW(TrainableModel::lora(base, bad, 1), Error);
  bad = adalora_config(6, 8, 100);
  EXPECT_THROW(bad.validate(), Error);  // target_r above init_r
  bad = adalora_config(6, 2, 100);
  bad.adalora->tinit = 60;
  bad.adalora->tfinal = 40;
  EXPECT_THROW(bad.validate(), Error);  // no budgeting phase left
}

TEST(AdaLora, OrthogonalRegularizerValueAndGradient) {
  const Model base = stories();
  LoraConfig c = adalora_config(4, 2, 100);
  c.target_modules = {"q_proj", "down_proj"};
  c.adalora->orth_reg_weight = 0.5;
  TrainableModel m = TrainableModel::lora(base, c, 3);
  const std::vector<LoraLinear*> layers = m.lora_layers();
  ASSERT_EQ(layers.size(), 10u);

  // value: 0.5 · mean over the 20 A and B matrices of ‖AAᵀ − I‖_F and ‖BᵀB − I‖_F, in double
  auto defect = [](const Tensor& x, bool rows) {
    const int64_t r = rows ? x.dim(0) : x.dim(1), len = rows ? x.dim(1) : x.dim(0);
    double ss = 0;
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < r; ++j) {
        double g = 0;
        for (int64_t t = 0; t < len; ++t)
          g += rows ? double(x.f32()[i * len + t]) * x.f32()[j * len + t] : double(x.f32()[t * r + i]) * x.f32()[t * r + j];
        if (i == j) g -= 1;
        ss += g * g;
      }
    return std::sqrt(ss);
  };
  auto value = [&] {
    double s = 0;
    for (LoraLinear* l : layers) s += defect(l->lora_a, true) + defect(l->lora_b, false);
    return 0.5 * s / 20.0;
  };
  m.zero_grad();
  const double reg = add_orthogonal_regularization(m);
  EXPECT_NEAR(reg, value(), 1e-5 * value());
  EXPECT_GT(reg, 0.4);  // small random A, B are far from orthogonal: each defect is about √r
  expect_gradient(layers[0]->lora_a.f32(), size_t(layers[0]->lora_a.numel()), layers[0]->grad_a.f32(), value, "dA",
                  1e-3f, 5e-3);
  expect_gradient(layers[9]->lora_b.f32(), 40, layers[9]->grad_b.f32(), value, "dB", 1e-3f, 5e-3);
}

TEST(AdaLora, BudgetFollowsTheCubicSchedule) {
  AdaLoraOptions o;
  o.tinit = 5;
  o.tfinal = 10;
  o.total_step = 100;
  o.delta_t = 3;
  const int64_t b0 = 120, bT = 80;
  // warm-up: the whole budget, no masking
  for (int64_t t : {0, 1, 5}) {
    EXPECT_EQ(adalora_budget(o, b0, bT, t).budget, 120) << t;
    EXPECT_FALSE(adalora_budget(o, b0, bT, t).mask) << t;
  }
  // b(t) = ⌊80 + 40 (1 − (t − 5)/85)³⌋, worked by hand:
  //   t = 6:  (84/85)³ = 0.96514... -> 118.6 -> 118
  //   t = 50: (40/85)³ = 0.10421... -> 84.17 -> 84
  //   t = 89: (1/85)³  ≈ 1.6e-6     -> 80.00006 -> 80
  EXPECT_EQ(adalora_budget(o, b0, bT, 6).budget, 118);
  EXPECT_EQ(adalora_budget(o, b0, bT, 50).budget, 84);
  EXPECT_EQ(adalora_budget(o, b0, bT, 89).budget, 80);
  EXPECT_EQ(adalora_budget(o, b0, bT, 90).budget, 80);  // t = T − tfinal: the target
  EXPECT_EQ(adalora_budget(o, b0, bT, 99).budget, 80);
  // masking every deltaT steps in the pruning phase, and at every step of the final phase
  EXPECT_TRUE(adalora_budget(o, b0, bT, 6).mask);
  EXPECT_FALSE(adalora_budget(o, b0, bT, 7).mask);
  EXPECT_FALSE(adalora_budget(o, b0, bT, 8).mask);
  EXPECT_TRUE(adalora_budget(o, b0, bT, 9).mask);
  EXPECT_TRUE(adalora_budget(o, b0, bT, 91).mask);
  EXPECT_TRUE(adalora_budget(o, b0, bT, 92).mask);
}

TEST(AdaLora, ImportanceScoresFollowTheMovingAverages) {
  // One matrix (layer 0's q_proj, r = 2) with entries and gradients chosen so that every entry of a row
  // of A, of E, and of a column of B has the same sensitivity I = |w · g|:
  //   I(E_k) = 0.2, I(A_k·) = 0.1 (k + 1), I(B_·k) = 0.3.
  // With β1 = β2 = 0.85, after one update Ī = 0.15 I, Ū = 0.15 · |I − 0.15 I| = 0.1275 I; after a second
  // with the same I, Ī = 0.85 · 0.15 I + 0.15 I = 0.2775 I and Ū = 0.85 · 0.1275 I + 0.15 · 0.7225 I = 0.21675 I.
  // Entry score s = Ī Ū = 0.060148125 I², and the triplet score S_k = s(E_k) + mean s(A_k·) + mean s(B_·k):
  //   S_0 = 0.060148125 · (0.04 + 0.01 + 0.09) = 0.0084207375
  //   S_1 = 0.060148125 · (0.04 + 0.04 + 0.09) = 0.01022518125
  const Model base = stories();
  LoraConfig c = adalora_config(2, 1, 100);
  c.target_modules = {"q_proj"};
  c.layers_to_transform = {0};
  c.adalora->delta_t = 1000;  // no masking at steps 1 and 2
  TrainableModel m = TrainableModel::lora(base, c, 1);
  LoraLinear& l = *m.lora_layers().at(0);
  for (int64_t k = 0; k < 2; ++k) {
    l.lora_e.f32()[k] = 2.0f;
    l.grad_e.f32()[k] = -0.1f;
    for (int64_t i = 0; i < l.in_features; ++i) {
      l.lora_a.f32()[k * l.in_features + i] = (i % 2 ? -1.0f : 1.0f);
      l.grad_a.f32()[k * l.in_features + i] = 0.1f * float(k + 1);
    }
    for (int64_t o = 0; o < l.out_features; ++o) {
      l.lora_b.f32()[o * 2 + k] = 0.5f;
      l.grad_b.f32()[o * 2 + k] = (o % 3 ? 0.6f : -0.6f);
    }
  }
  RankAllocator alloc(m);
  EXPECT_EQ(alloc.initial_budget(), 2);
  EXPECT_EQ(alloc.target_budget(), 1);
  alloc.update_and_allocate(1);
  alloc.update_and_allocate(2);
  const std::vector<double> s = alloc.triplet_scores(0);
  EXPECT_NEAR(s[0], 0.0084207375, 1e-8);
  EXPECT_NEAR(s[1], 0.01022518125, 1e-8);
  EXPECT_EQ(l.lora_e.f32()[0], 2.0f);  // nothing masked yet
}

TEST(AdaLora, MaskingKeepsExactlyTheBudget) {
  const Model base = stories();
  LoraConfig c = adalora_config(6, 2, 100);
  c.adalora->delta_t = 10;
  TrainableModel m = TrainableModel::lora(base, c, 5);
  std::mt19937_64 rng(8);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (const Param& p : m.params()) {
    for (int64_t i = 0; i < p.value->numel(); ++i) {
      if (p.name.ends_with("lora_E")) p.value->f32()[i] = d(rng);
      p.grad->f32()[i] = d(rng);
    }
  }
  RankAllocator alloc(m);
  EXPECT_EQ(alloc.initial_budget(), 210);
  EXPECT_EQ(alloc.target_budget(), 70);
  int64_t budget = 0;
  for (int64_t t = 1; t <= 30; ++t) budget = alloc.update_and_allocate(t);  // masks at 10, 20, 30
  EXPECT_EQ(budget, int64_t(70 + 140 * std::pow(1 - 30.0 / 100, 3)));  // 118
  int64_t kept = 0, zero_e = 0;
  for (const auto& [module, rank] : alloc.ranks()) kept += rank;
  for (LoraLinear* l : m.lora_layers())
    for (int64_t k = 0; k < l->r; ++k) zero_e += l->lora_e.f32()[k] == 0.0f;
  EXPECT_EQ(kept, budget);
  EXPECT_EQ(zero_e, 210 - budget);
}

// ---- end to end: training on the Zuzu stories

std::vector<TrainExample> zuzu_examples(const Tokenizer& tok) {
  std::istringstream lines(test::read_text(std::string(LORA_TEST_DATA_DIR) + "/zuzu_stories.txt"));
  std::vector<TrainExample> out;
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) {
      TrainExample e;
      e.input_ids = tok.encode_for_model(line);
      e.labels = e.input_ids;
      out.push_back(e);
    }
  return out;
}

TrainingArguments run_args(const std::string& dir, int64_t steps) {
  TrainingArguments a;
  a.output_dir = dir;
  a.max_steps = steps;
  a.batch_size = 4;
  a.learning_rate = 1e-2;
  a.lr_scheduler = "cosine";
  a.warmup_steps = 5;
  a.logging_steps = 1;
  a.seed = 3;
  return a;
}

std::vector<float> all_logits(const Model& m, const std::vector<int32_t>& tokens) {
  Transformer t(m, 1, int64_t(tokens.size()));
  const Tensor& l = t.forward(tokens.data(), 1, int64_t(tokens.size()), true);
  return std::vector<float>(l.f32(), l.f32() + l.numel());
}

TEST(AdaLora, TrainsToTheTargetBudgetSavesSlicedAndReloads) {
  TempDir tmp;
  const Model base = stories();
  const std::vector<TrainExample> data = zuzu_examples(*base.tokenizer);
  const int64_t steps = 60;
  LoraConfig c = adalora_config(6, 3, 0);  // total_step from the run
  c.adalora->tinit = 5;
  c.adalora->tfinal = 15;
  c.adalora->delta_t = 2;
  TrainableModel m = TrainableModel::lora(base, c, 11);
  Trainer trainer(m, run_args(tmp / "out", steps), data);
  ASSERT_TRUE(trainer.train());
  EXPECT_EQ(m.adalora_options()->total_step, steps);

  // the budget shrank from 6 to 3 per matrix and the log shows it
  const auto& h = trainer.history();
  EXPECT_EQ(h[2].budget, 210);
  EXPECT_LT(h[20].budget, 210);
  EXPECT_GT(h[20].budget, 105);
  EXPECT_EQ(h.back().budget, 105);
  int64_t total = 0;
  std::set<int64_t> distinct;
  for (const auto& [module, rank] : trainer.rank_allocator()->ranks()) {
    total += rank;
    distinct.insert(rank);
  }
  EXPECT_EQ(total, 3 * 35);       // target_r × number of adapted matrices
  EXPECT_GT(distinct.size(), 1u);  // ranks differ across modules
  std::printf("  AdaLoRA loss %.3f -> %.3f; final ranks span %lld..%lld\n", h.front().loss, h.back().loss,
              (long long)*distinct.begin(), (long long)*distinct.rbegin());
  EXPECT_LT(h.back().loss, 0.75 * h.front().loss);
  EXPECT_TRUE(std::filesystem::exists(tmp / "out/rank_allocation.png"));
  const std::string table = format_rank_table(trainer.rank_allocator()->ranks());
  std::printf("%s", table.c_str());
  EXPECT_NE(table.find("layer 4"), std::string::npos) << table;
  EXPECT_NE(table.find("down_proj"), std::string::npos) << table;
  EXPECT_NE(table.find(" 105\n"), std::string::npos) << table;  // the grand total

  // the saved adapter: PEFT's AdaLoRA layout, sliced to the kept triplets
  std::ifstream cfg_in(tmp / "out/adapter_config.json");
  const auto cfg = nlohmann::json::parse(cfg_in);
  EXPECT_EQ(cfg["peft_type"], "ADALORA");
  EXPECT_EQ(cfg["init_r"], 6);
  EXPECT_EQ(cfg["target_r"], 3);
  EXPECT_EQ(cfg["total_step"], steps);
  ASSERT_EQ(cfg["rank_pattern"].size(), 35u);
  const auto& q0 = cfg["rank_pattern"]["model.layers.0.self_attn.q_proj.lora_E"];
  ASSERT_EQ(q0.size(), 6u);
  int64_t kept_q0 = 0;
  for (const auto& b : q0) kept_q0 += b.get<bool>();
  const SafetensorsFile file = SafetensorsFile::open(tmp / "out/adapter_model.safetensors");
  const std::string key = "base_model.model.model.layers.0.self_attn.q_proj.";
  EXPECT_EQ(file.find(key + "lora_A")->shape, (std::vector<int64_t>{kept_q0, 64}));
  EXPECT_EQ(file.find(key + "lora_E")->shape, (std::vector<int64_t>{kept_q0, 1}));
  EXPECT_EQ(file.find(key + "lora_B")->shape, (std::vector<int64_t>{64, kept_q0}));

  // reloaded, it computes what the model computed at the end of training
  const TrainableModel again = load_peft_adapter(base, tmp / "out");
  const std::vector<int32_t> tokens = base.tokenizer->encode_for_model("Once upon a time, Zuzu found a red ball.");
  const std::vector<float> want = all_logits(merged_model(m), tokens), got = all_logits(merged_model(again), tokens);
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, double(std::fabs(want[i] - got[i])));
  EXPECT_LT(worst, 1e-5);
  // and saving the reloaded adapter again writes the same tensors
  save_peft_adapter(again, tmp / "again");
  const SafetensorsFile twice = SafetensorsFile::open(tmp / "again/adapter_model.safetensors");
  for (const SafetensorsTensorInfo& t : file.tensors()) {
    const Tensor a = file.load(t.name), b = twice.load(t.name);
    ASSERT_EQ(a.shape(), b.shape()) << t.name;
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0) << t.name;
  }

  // applied on the fly (the AdapterSet folds E into A), and exported as a llama.cpp GGUF adapter
  auto on_the_fly = [&](const std::string& path) {
    AdapterSet set(base);
    set.activate(set.load(path));
    Transformer t(base, 1, int64_t(tokens.size()));
    t.set_adapters(&set);
    const Tensor& l = t.forward(tokens.data(), 1, int64_t(tokens.size()), true);
    double w = 0;
    for (size_t i = 0; i < want.size(); ++i) w = std::max(w, double(std::fabs(want[i] - l.f32()[i])));
    return w;
  };
  EXPECT_LT(on_the_fly(tmp / "out"), 1e-4);
  Adapter ada = load_adapter(tmp / "out", base);
  EXPECT_TRUE(ada.is_adalora());
  write_adapter(ada, tmp / "ada.gguf", &base);
  const Adapter gguf = read_adapter(tmp / "ada.gguf", &base.config);
  EXPECT_FALSE(gguf.is_adalora());
  int64_t pruned_modules = 0;
  for (const auto& [path, f] : ada.linears) {
    int64_t nonzero = 0;
    for (int64_t k = 0; k < f.rank(); ++k) nonzero += f.e.f32()[k] != 0.0f;
    pruned_modules += nonzero == 0;
    if (nonzero == 0) EXPECT_FALSE(gguf.linears.count(path)) << path;  // nothing left to apply
    else EXPECT_EQ(gguf.linears.at(path).rank(), nonzero) << path;
  }
  EXPECT_EQ(int64_t(gguf.linears.size()) + pruned_modules, 35);
  EXPECT_LT(on_the_fly(tmp / "ada.gguf"), 1e-4);
}

// E folded into A: the same update, pruned triplets and emptied modules left out, ranks described.
TEST(AdaLora, PlainLoraFoldsTheSingularValues) {
  Adapter a;
  a.config = adalora_config(3, 2, 10);
  a.config.target_modules = {"q_proj", "v_proj"};
  const float s = a.config.scaling_for("model.layers.0.self_attn.q_proj");
  a.linears["model.layers.0.self_attn.q_proj"] =
      LoraFactors{tensor_from(randn(3 * 5, 1), {3, 5}), tensor_from(randn(4 * 3, 2), {4, 3}), Tensor(), s,
                  tensor_from({0.5f, 0.0f, -2.0f}, {3, 1})};
  a.linears["model.layers.0.self_attn.v_proj"] =
      LoraFactors{tensor_from(randn(3 * 5, 3), {3, 5}), tensor_from(randn(4 * 3, 4), {4, 3}), Tensor(), s,
                  tensor_from({0.0f, 0.0f, 0.0f}, {3, 1})};
  const Adapter plain = as_plain_lora(a);
  EXPECT_FALSE(plain.is_adalora());
  ASSERT_EQ(plain.linears.size(), 1u);  // v_proj kept no triplet
  const LoraFactors& q = plain.linears.at("model.layers.0.self_attn.q_proj");
  EXPECT_EQ(q.rank(), 2);
  EXPECT_TRUE(q.e.empty());
  const Tensor want = a.linears.at("model.layers.0.self_attn.q_proj").delta(), got = q.delta();
  for (int64_t i = 0; i < want.numel(); ++i) EXPECT_NEAR(got.f32()[i], want.f32()[i], 1e-6f) << i;
  // by hand: ΔW[0][0] = s·(0.5·B00·A00 − 2·B02·A20)
  const LoraFactors& f = a.linears.at("model.layers.0.self_attn.q_proj");
  EXPECT_NEAR(want.f32()[0], s * (0.5f * f.b.f32()[0] * f.a.f32()[0] - 2.0f * f.b.f32()[2] * f.a.f32()[10]), 1e-6f);
  EXPECT_EQ(plain.config.r, 2);
}

TEST(AdaLora, ResumeContinuesExactly) {
  TempDir tmp;
  const Model base = stories();
  const std::vector<TrainExample> data = zuzu_examples(*base.tokenizer);
  LoraConfig c = adalora_config(4, 2, 0);
  c.target_modules = {"q_proj", "v_proj", "down_proj"};
  c.adalora->tinit = 3;
  c.adalora->tfinal = 5;
  c.lora_dropout = 0.1f;
  auto run = [&](const std::string& dir, int64_t steps, const std::string& resume, int64_t total) {
    TrainableModel m = TrainableModel::lora(base, c, 11);
    TrainingArguments a = run_args(dir, total);
    a.save_steps = 10;
    Trainer t(m, a, data);
    if (steps < total) {
      t.on_step = [&](const StepLog& s) {
        if (s.step == steps) t.stop();
      };
    }
    t.train(resume);
    std::vector<Tensor> v;
    for (const Param& p : m.params()) v.push_back(p.value->clone());
    return std::make_pair(v, t.history());
  };
  const auto straight = run(tmp / "a", 20, "", 20);
  run(tmp / "b", 10, "", 20);
  const auto resumed = run(tmp / "b", 20, tmp / "b/checkpoint-10", 20);
  ASSERT_EQ(straight.first.size(), resumed.first.size());
  for (size_t i = 0; i < straight.first.size(); ++i)
    for (int64_t j = 0; j < straight.first[i].numel(); ++j)
      ASSERT_NEAR(straight.first[i].f32()[j], resumed.first[i].f32()[j], 1e-6);
  ASSERT_EQ(straight.second.size(), resumed.second.size());
  for (size_t i = 0; i < straight.second.size(); ++i) {
    EXPECT_EQ(straight.second[i].loss, resumed.second[i].loss) << "step " << i + 1;
    EXPECT_EQ(straight.second[i].budget, resumed.second[i].budget) << "step " << i + 1;
  }
}

}  // namespace
}  // namespace lora

namespace lora {
namespace {

TEST(AdaLoraCli, TrainWithAYamlConfigPrintsTheRanksAndTheAdapterWorks) {
  TempDir tmp;
  const std::string data = std::string(LORA_TEST_DATA_DIR) + "/zuzu_stories.txt";
  test::write_text(tmp / "adalora.yaml",
                   "method: adalora\ninit_r: 6\ntarget_r: 2\ntinit: 3\ntfinal: 6\ndelta_t: 2\nmax_steps: 30\nlr: 1e-2\n");
  const auto r = test::run_cli("train -m " + test::stories_bin() + " -d " + data + " -o " + (tmp / "out") + " -c " +
                               (tmp / "adalora.yaml") + " --logging-steps 5 --target q_proj,v_proj,down_proj");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("AdaLoRA init_r=6 -> target_r=2"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("budget 30"), std::string::npos) << r.err;  // 15 matrices x init_r 6 before pruning
  EXPECT_NE(r.out.find("AdaLoRA ranks (budget 30 of 90 triplets"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("down_proj"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(tmp / "out/rank_allocation.png"));
  std::ifstream in(tmp / "out/adapter_config.json");
  EXPECT_EQ(nlohmann::json::parse(in)["peft_type"], "ADALORA");

  auto loss = [&](const std::string& extra) {
    const auto e = test::run_cli("eval -m " + test::stories_bin() + extra + " -d " + data + " --json");
    EXPECT_EQ(e.exit_code, 0) << e.err;
    return nlohmann::json::parse(e.out)["loss"].get<double>();
  };
  EXPECT_LT(loss(" --adapter " + (tmp / "out")), 0.6 * loss(""));

  // a value PEFT rejects is one clear error before anything is written
  const auto bad = test::run_cli("train -m " + test::stories_bin() + " -d " + data + " -o " + (tmp / "bad") +
                                 " --method adalora --init-r 4 --target-r 6 --max-steps 5");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("target_r (6) cannot exceed init_r (4)"), std::string::npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(tmp / "bad"));
}

// AdaLoRA over a QLoRA base: the base quantized to NF4 on load, the SVD-shaped adapter trained on top in
// f32, pruned to the target budget, and the saved adapter lowers the loss of the quantized base.
TEST(AdaLoraCli, TrainsOnANf4QuantizedBase) {
  TempDir tmp;
  const std::string data = std::string(LORA_TEST_DATA_DIR) + "/zuzu_stories.txt";
  const auto r = test::run_cli("train -m " + test::stories_bin() + " -d " + data + " -o " + (tmp / "out") +
                               " --quantize nf4 --method adalora --init-r 6 --target-r 2 --tinit 3 --tfinal 6"
                               " --delta-t 2 --max-steps 30 --lr 1e-2 --logging-steps 5 --target q_proj,v_proj,down_proj");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("AdaLoRA ranks (budget 30 of 90 triplets"), std::string::npos) << r.out;
  EXPECT_NE(test::read_text(tmp / "out/training_args.yaml").find("quantize: nf4"), std::string::npos);

  auto loss = [&](const std::string& extra) {
    const auto e = test::run_cli("eval -m " + test::stories_bin() + " --quantize nf4" + extra + " -d " + data + " --json");
    EXPECT_EQ(e.exit_code, 0) << e.err;
    return nlohmann::json::parse(e.out)["loss"].get<double>();
  };
  EXPECT_LT(loss(" --adapter " + (tmp / "out")), 0.6 * loss(""));
}

}  // namespace
}  // namespace lora
