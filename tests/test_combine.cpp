// Combining adapters like PEFT's add_weighted_adapter: "cat" is exactly the weighted sum of the
// adapters' effects, "svd" at full rank reproduces the summed delta, "linear" follows PEFT's formula.
#include <gtest/gtest.h>

#include "adapter_test_util.h"
#include "adapters/adapter_io.h"
#include "adapters/combine.h"
#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/linalg.h"
#include "formats/model_loader.h"

namespace lora {
namespace {

using test::TempDir;

Model stories() {
  LoadOptions o;
  o.load_tokenizer = false;
  return load_model(test::stories_bin(), o);
}

// Σ w_i ΔW_i of a module in double, [out, in] row-major (the embedding: [hidden, vocab]).
std::vector<double> summed_delta(const std::vector<std::pair<const Adapter*, float>>& parts, const std::string& module) {
  std::vector<double> sum;
  for (const auto& [a, w] : parts) {
    const LoraFactors* f = module == "model.embed_tokens" ? (a->embedding ? &*a->embedding : nullptr)
                                                          : (a->linears.count(module) ? &a->linears.at(module) : nullptr);
    if (!f) continue;
    const int64_t out = f->b.dim(0), in = f->a.dim(1), r = f->rank();
    sum.resize(size_t(out * in), 0.0);
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        double d = 0;
        for (int64_t k = 0; k < r; ++k) d += double(f->b.f32()[o * r + k]) * f->a.f32()[k * in + i];
        sum[size_t(o * in + i)] += double(w) * f->scaling * d;
      }
  }
  return sum;
}

double max_delta_error(const Adapter& combined, const std::vector<std::pair<const Adapter*, float>>& parts) {
  double worst = 0;
  std::vector<std::string> modules;
  for (const auto& [m, f] : combined.linears) modules.push_back(m);
  if (combined.embedding) modules.push_back("model.embed_tokens");
  for (const std::string& m : modules) {
    const std::vector<double> want = summed_delta(parts, m);
    const std::vector<double> got = summed_delta({{&combined, 1.0f}}, m);
    for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(want[i] - got[i]));
  }
  return worst;
}

struct Inputs {
  Adapter plain, rs;
};

Inputs two_adapters(const Model& base, const TempDir& tmp) {
  test::make_fixture(test::stories_bin(), tmp / "plain", "plain", 71);    // all linears + embedding, ranks 4 and 2
  test::make_fixture(test::stories_bin(), tmp / "rs", "rslora", 72);      // q, v, up; rsLoRA scaling
  return {load_adapter(tmp / "plain", base), load_adapter(tmp / "rs", base)};
}

TEST(Combine, CatIsExactlyTheSumOfTheAdaptersEffects) {
  const Model base = stories();
  TempDir tmp;
  const Inputs in = two_adapters(base, tmp);
  const Adapter cat = combine_adapters({{&in.plain, 0.7f}, {&in.rs, -0.4f}}, CombineMethod::Cat);
  EXPECT_EQ(cat.linears.at("model.layers.0.self_attn.q_proj").rank(), 8);  // 4 + 4
  EXPECT_EQ(cat.linears.at("model.layers.0.mlp.down_proj").rank(), 2);     // only plain adapts it
  EXPECT_EQ(cat.linears.at("model.layers.0.mlp.up_proj").rank(), 8);
  EXPECT_LT(max_delta_error(cat, {{&in.plain, 0.7f}, {&in.rs, -0.4f}}), 1e-6);

  // As a model: the combined adapter alone = both active at those scales. Written as a PEFT folder
  // and read back, the same.
  write_peft_adapter(cat, tmp / "cat");
  AdapterSet set(base);
  const std::string p = set.add(in.plain, "plain"), r = set.add(in.rs, "rs");
  const std::string c = set.load(tmp / "cat");
  EXPECT_EQ(set.adapter(c).linears.at("model.layers.0.self_attn.q_proj").scaling, 1.0f);
  const std::vector<int32_t> tokens = test::sample_tokens(2, 32, 512, 73);
  set.activate({{p, 0.7f}, {r, -0.4f}});
  const std::vector<float> both = test::logits_of(base, &set, tokens, 2, 32);
  set.activate(c);
  EXPECT_LT(test::scaled_diff(test::logits_of(base, &set, tokens, 2, 32), both), 1e-5);
}

TEST(Combine, SvdAtFullRankReproducesTheSummedDeltaAndTruncatesOptimally) {
  const Model base = stories();
  TempDir tmp;
  const Inputs in = two_adapters(base, tmp);
  const std::vector<std::pair<const Adapter*, float>> parts = {{&in.plain, 1.0f}, {&in.rs, 0.5f}};
  const Adapter full = combine_adapters({{&in.plain, 1.0f}, {&in.rs, 0.5f}}, CombineMethod::Svd, 8);
  const double err = max_delta_error(full, parts);
  std::printf("  svd at full rank: max |ΔW - Σ w ΔW_i| = %.3g\n", err);
  EXPECT_LT(err, 1e-5);

  const Adapter def = combine_adapters({{&in.plain, 1.0f}, {&in.rs, 0.5f}}, CombineMethod::Svd);  // PEFT's default rank
  EXPECT_EQ(def.rank_histogram().rbegin()->first, 4);

  // Truncated to rank 2: the error is the best a rank-2 matrix can do (Eckart-Young): the tail of the spectrum.
  const Adapter two = combine_adapters({{&in.plain, 1.0f}, {&in.rs, 0.5f}}, CombineMethod::Svd, 2);
  const std::string module = "model.layers.2.self_attn.q_proj";
  const std::vector<double> want = summed_delta(parts, module), got = summed_delta({{&two, 1.0f}}, module);
  Tensor d(DType::F32, {64, 64});
  double err2 = 0;
  for (size_t i = 0; i < want.size(); ++i) d.f32()[i] = float(want[i]), err2 += (want[i] - got[i]) * (want[i] - got[i]);
  const Svd s = svd(d);
  double tail = 0;
  for (int64_t k = 2; k < s.s.numel(); ++k) tail += double(s.s.f32()[k]) * s.s.f32()[k];
  EXPECT_EQ(two.linears.at(module).rank(), 2);
  EXPECT_NEAR(std::sqrt(err2), std::sqrt(tail), 1e-4 * std::sqrt(tail) + 1e-7);
}

TEST(Combine, LinearFollowsPeftsFormula) {
  const Model base = stories();
  TempDir tmp;
  test::make_fixture(test::stories_bin(), tmp / "a", "rslora", 81);
  test::make_fixture(test::stories_bin(), tmp / "b", "rslora", 82);
  const Adapter a = load_adapter(tmp / "a", base), b = load_adapter(tmp / "b", base);
  const Adapter lin = combine_adapters({{&a, 0.3f}, {&b, 0.6f}}, CombineMethod::Linear);
  const std::string m = "model.layers.1.mlp.up_proj";
  const LoraFactors &fa = a.linears.at(m), &fb = b.linears.at(m), &fl = lin.linears.at(m);
  const float ka = std::sqrt(0.3f * fa.scaling), kb = std::sqrt(0.6f * fb.scaling);
  for (int64_t i = 0; i < fl.a.numel(); ++i) EXPECT_NEAR(fl.a.f32()[i], ka * fa.a.f32()[i] + kb * fb.a.f32()[i], 1e-6);
  for (int64_t i = 0; i < fl.b.numel(); ++i) EXPECT_NEAR(fl.b.f32()[i], ka * fa.b.f32()[i] + kb * fb.b.f32()[i], 1e-6);
  EXPECT_EQ(fl.scaling, 1.0f);
  EXPECT_FALSE(lin.config.use_rslora);  // scaling 1 must stay 1

  test::make_fixture(test::stories_bin(), tmp / "plain", "plain", 83);  // down_proj has rank 2 there, 4 here
  const Adapter p = load_adapter(tmp / "plain", base);
  const Adapter rs_up = combine_adapters({{&a, 1.0f}, {&p, 1.0f}}, CombineMethod::Linear);  // equal ranks: fine
  EXPECT_EQ(rs_up.linears.at(m).rank(), 4);
  EXPECT_THROW(combine_adapters({{&a, -1.0f}, {&b, 1.0f}}, CombineMethod::Linear), Error);  // √ of a negative
  const Adapter rank8 = combine_adapters({{&a, 1.0f}, {&b, 1.0f}}, CombineMethod::Cat);
  try {
    combine_adapters({{&rank8, 1.0f}, {&a, 1.0f}}, CombineMethod::Linear);
    ADD_FAILURE() << "unequal ranks must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ranks 8 and 4"), std::string::npos) << e.what();
  }
}

TEST(Combine, RefusesWhatCannotBeCombined) {
  const Model base = stories();
  TempDir tmp;
  test::make_fixture(test::stories_bin(), tmp / "dora", "dora", 91);
  test::make_fixture(test::stories_bin(), tmp / "lora", "lora", 92);  // lm_head in modules_to_save
  const Adapter dora = load_adapter(tmp / "dora", base), saved = load_adapter(tmp / "lora", base);
  for (const Adapter* a : {&dora, &saved})
    for (CombineMethod m : {CombineMethod::Cat, CombineMethod::Linear, CombineMethod::Svd})
      EXPECT_THROW(combine_adapters({{a, 1.0f}, {a, 1.0f}}, m), Error);
  EXPECT_THROW(combine_method_from_name("ties"), Error);
}

}  // namespace
}  // namespace lora
