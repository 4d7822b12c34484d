// QLoRA: the matrix multiply with a quantized operand against the reference on the dequantized weight
// (forward x·Wᵀ and input gradient dy·W, panels that split blocks, accumulation), the adapted linear
// over a quantized base (finite differences for A and B, the reference for dx), the training pass over
// a quantized random model against the same model dequantized, merging, and the learning test: a QLoRA
// fine-tune of stories260K reaches the final training loss of the full-precision LoRA run within 5%.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <sstream>

#include "adapters/lora_linear.h"
#include "adapters/merge.h"
#include "adapters/peft_io.h"
#include "core/matmul.h"
#include "core/quant.h"
#include "formats/model_loader.h"
#include "grad_check.h"
#include "kernels/cross_entropy.h"
#include "model/quantize_model.h"
#include "model/random_model.h"
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

Tensor tensor_from(const std::vector<float>& v, std::vector<int64_t> shape) {
  Tensor t(DType::F32, std::move(shape));
  std::copy(v.begin(), v.end(), t.f32());
  return t;
}

Tensor round_bf16(const Tensor& t) { return t.to(DType::BF16).to(DType::F32); }

const QuantConfig kTypes[] = {{DType::NF4, true}, {DType::FP4, false}, {DType::INT8_ROW, false}};

// |got − want| within rel · Σ|a||b| (+ a floor) for every element, where Σ|a||b| is the magnitude of the
// dot product behind each output element.
void expect_close(const Tensor& got, const Tensor& want, const Tensor& magnitude, double rel, const std::string& what) {
  for (int64_t i = 0; i < got.numel(); ++i)
    ASSERT_NEAR(got.f32()[i], want.f32()[i], rel * magnitude.f32()[i] + 1e-6) << what << " element " << i;
}

// Σ_k |op(a)[i,k]| |op(b)[k,j]| for the error bounds.
Tensor abs_product(const Tensor& a, bool ta, const Tensor& b, bool tb, int64_t m, int64_t n) {
  Tensor aa = a.clone(), bb = b.clone();
  for (int64_t i = 0; i < aa.numel(); ++i) aa.f32()[i] = std::fabs(aa.f32()[i]);
  for (int64_t i = 0; i < bb.numel(); ++i) bb.f32()[i] = std::fabs(bb.f32()[i]);
  Tensor out(DType::F32, {m, n});
  matmul_reference(mat(aa), ta, mat(bb), tb, mut_mat(out));
  return out;
}

// Forward (x·Wᵀ, with and without accumulation) and input gradient (dy·W) with W quantized, for shapes
// whose rows are not whole blocks (in = 200), are (in = 256), and that need several decoded panels.
TEST(Qlora, QuantizedMatmulEqualsTheDequantizedReference) {
  struct Shape { int64_t m, out, in; };
  for (const Shape& sh : {Shape{13, 150, 200}, Shape{7, 1500, 256}, Shape{5, 1300, 200}, Shape{3, 40, 3000}})
    for (const QuantConfig& qc : kTypes) {
      const std::string what = std::string(quant_type_name(qc.type)) + " [" + std::to_string(sh.out) + "x" + std::to_string(sh.in) + "]";
      const Tensor w = tensor_from(test::randn(size_t(sh.out * sh.in), 31, 0.05f), {sh.out, sh.in});
      const Tensor q = quantize(w, qc);
      const Tensor wd = dequantize(q), wd16 = round_bf16(wd);
      const Tensor x = tensor_from(test::randn(size_t(sh.m * sh.in), 32), {sh.m, sh.in});
      const Tensor dy = tensor_from(test::randn(size_t(sh.m * sh.out), 33), {sh.m, sh.out});

      // forward: exactly the bf16 product of the decoded panel (f32 summation order aside), and within
      // bf16 rounding of the f32 product with the dequantized weight
      Tensor y(DType::F32, {sh.m, sh.out}), y16(DType::F32, {sh.m, sh.out}), yref(DType::F32, {sh.m, sh.out});
      linear(x, q, nullptr, y);
      matmul_reference(mat(round_bf16(x)), false, mat(wd16), true, mut_mat(y16));
      matmul_reference(mat(x), false, mat(q), true, mut_mat(yref));  // MatView::at decodes the quantized weight
      const Tensor mag_y = abs_product(x, false, wd, true, sh.m, sh.out);
      expect_close(y, y16, mag_y, 1e-5, what + " forward vs bf16 reference");
      expect_close(y, yref, mag_y, 8e-3, what + " forward vs f32 reference");

      // accumulation (beta = 1) as the residual stream uses it
      Tensor acc = y.clone();
      matmul(mat(x), false, mat(q), true, mut_mat(acc), 1.0f, 1.0f);
      for (int64_t i = 0; i < acc.numel(); ++i) ASSERT_NEAR(acc.f32()[i], 2 * y.f32()[i], 1e-5 + 1e-6 * std::fabs(y.f32()[i])) << what;

      // input gradient dx = dy · W
      Tensor dx(DType::F32, {sh.m, sh.in}), dx16(DType::F32, {sh.m, sh.in}), dxref(DType::F32, {sh.m, sh.in});
      matmul(mat(dy), false, mat(q), false, mut_mat(dx));
      matmul_reference(mat(round_bf16(dy)), false, mat(wd16), false, mut_mat(dx16));
      matmul_reference(mat(dy), false, mat(wd), false, mut_mat(dxref));
      const Tensor mag_dx = abs_product(dy, false, wd, false, sh.m, sh.in);
      expect_close(dx, dx16, mag_dx, 1e-5, what + " dx vs bf16 reference");
      expect_close(dx, dxref, mag_dx, 8e-3, what + " dx vs f32 reference");
    }
}

// A LoRA adapter over a quantized base: dA and dB by finite differences (the base term does not depend
// on them), dx against the double-precision reference dy·W_deq + s·(dy·B)·A.
TEST(Qlora, AdaptedLinearOverQuantizedBase) {
  const int64_t n = 4, in = 192, out = 72, r = 3;
  for (const QuantConfig& qc : kTypes) {
    const Tensor q = quantize(tensor_from(test::randn(size_t(out * in), 41, 0.1f), {out, in}), qc);
    Tensor x = tensor_from(test::randn(size_t(n * in), 42), {n, in});
    LoraLinear l("layer", in, out, r, 0.5f, 0.0f, false);
    std::copy_n(test::randn(size_t(r * in), 43, 0.1f).begin(), r * in, l.lora_a.f32());
    std::copy_n(test::randn(size_t(out * r), 44, 0.1f).begin(), out * r, l.lora_b.f32());
    const std::vector<float> dyv = test::randn(size_t(n * out), 45);
    const LinearParams p{&q, nullptr, &l, nullptr, nullptr};
    auto loss = [&] {
      Tensor y(DType::F32, {n, out});
      adapted_linear_forward(p, x, y, nullptr, nullptr);
      return test::dot(y.f32(), dyv.data(), dyv.size());
    };
    Tensor y(DType::F32, {n, out}), dx(DType::F32, {n, in});
    LinearSaved saved;
    adapted_linear_forward(p, x, y, &saved, nullptr);
    const Tensor dy = tensor_from(dyv, {n, out});
    adapted_linear_backward(p, x, dy, saved, dx, false);
    test::expect_gradient(l.lora_a.f32(), size_t(l.lora_a.numel()), l.grad_a.f32(), loss, "dA", 1e-2f, 2e-3);
    test::expect_gradient(l.lora_b.f32(), size_t(l.lora_b.numel()), l.grad_b.f32(), loss, "dB", 1e-2f, 2e-3);

    const Tensor wd = dequantize(q), delta = l.delta_weight();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < in; ++k) {
        double want = 0, mag = 0;
        for (int64_t o = 0; o < out; ++o) {
          const double g = dyv[size_t(i * out + o)];
          want += g * (double(wd.f32()[o * in + k]) + delta.f32()[o * in + k]);
          mag += std::fabs(g * wd.f32()[o * in + k]);
        }
        ASSERT_NEAR(dx.f32()[i * in + k], want, 8e-3 * mag + 1e-5) << quant_type_name(qc.type) << " dx " << i << "," << k;
      }
  }
}

ModelConfig small_config() {
  ModelConfig c;
  c.hidden_size = 128;
  c.intermediate_size = 192;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 32;
  c.vocab_size = 97;
  c.max_position_embeddings = 64;
  c.attention_bias = true;
  return c;
}

// TrainableModel::lora over a quantized base computes what it computes over the same weights
// dequantized to bf16 (what the quantized matmul decodes its panels to; both keep bf16 activations
// between ops), never touches the quantized base, and merges into a full precision model.
TEST(Qlora, TrainingPassOverQuantizedBaseMatchesDequantizedBase) {
  Model quantized = random_model(small_config(), 5);
  quantize_linear_weights(quantized, {DType::NF4, true});
  ASSERT_TRUE(has_quantized_weights(quantized));
  Model dense = random_model(small_config(), 5);
  for (size_t l = 0; l < dense.weights.layers.size(); ++l)
    for (int p = 0; p < 7; ++p)
      *linear_weights(dense.weights.layers[l])[size_t(p)] =
          dequantize(*linear_weights(quantized.weights.layers[l])[size_t(p)]).to(DType::BF16);
  const Tensor wq_before = quantized.weights.layers[0].wq.clone();

  LoraConfig cfg;
  cfg.r = 4;
  cfg.target_modules = {"all-linear"};
  cfg.init_lora_weights = "false";  // B random: the adapter contributes from the start
  TrainableModel mq = TrainableModel::lora(quantized, cfg, 9), md = TrainableModel::lora(dense, cfg, 9);
  const int64_t B = 2, T = 12;
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    tokens[size_t(i)] = int32_t((i * 37 + 5) % 97);
    targets[size_t(i)] = int32_t((i * 53 + 11) % 97);
  }
  for (TrainableModel* m : {&mq, &md}) {
    m->zero_grad();
    m->forward_backward(tokens.data(), targets.data(), B, T, 1.0f / float(B * T));
  }
  const double lq = mq.evaluate(tokens.data(), targets.data(), B, T).loss_sum;
  const double ld = md.evaluate(tokens.data(), targets.data(), B, T).loss_sum;
  EXPECT_NEAR(lq, ld, 2e-3 * std::fabs(ld));
  for (size_t i = 0; i < mq.params().size(); ++i) {
    const Tensor& gq = *mq.params()[i].grad;
    const Tensor& gd = *md.params()[i].grad;
    double diff = 0, norm = 0;
    for (int64_t k = 0; k < gq.numel(); ++k) {
      diff += std::pow(double(gq.f32()[k]) - gd.f32()[k], 2);
      norm += std::pow(double(gd.f32()[k]), 2);
    }
    EXPECT_LT(std::sqrt(diff), 0.02 * std::sqrt(norm) + 1e-7) << mq.params()[i].name;
  }
  EXPECT_EQ(std::memcmp(wq_before.data(), quantized.weights.layers[0].wq.data(), wq_before.nbytes()), 0);
  EXPECT_TRUE(quantized.weights.layers[0].wq.quantized());

  // the adapter saved from the QLoRA model loads onto the quantized base again
  test::TempDir dir;
  save_peft_adapter(mq, dir / "adapter");
  TrainableModel again = load_peft_adapter(quantized, dir / "adapter");
  EXPECT_EQ(again.evaluate(tokens.data(), targets.data(), B, T).loss_sum, lq);

  // merged: every weight full precision, computing base + adapter
  const Model merged = merged_model(mq);
  EXPECT_FALSE(has_quantized_weights(merged));
  Transformer t(merged, B, T);
  const Tensor& logits = t.forward(tokens.data(), B, T, true);
  double nll = 0;
  for (int64_t i = 0; i < B * T; ++i) nll += token_nll(logits.f32() + i * 97, 97, targets[size_t(i)]);
  EXPECT_NEAR(nll, lq, 2e-3 * std::fabs(lq));
}

// QDoRA and PiSSA over a quantized base: DoRA's row norms decode the quantized rows; PiSSA's residual is
// quantized again so the base keeps its memory.
TEST(Qlora, DoraAndPissaOverQuantizedBase) {
  Model base = random_model(small_config(), 6);
  quantize_linear_weights(base, {DType::NF4, true});
  LoraConfig cfg;
  cfg.r = 4;
  cfg.target_modules = {"q_proj", "v_proj"};
  cfg.use_dora = true;
  TrainableModel dora = TrainableModel::lora(base, cfg, 1);
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6}, targets = {2, 3, 4, 5, 6, 7};
  const double base_loss = TrainableModel::lora(base, LoraConfig{}, 1).evaluate(tokens.data(), targets.data(), 1, 6).loss_sum;
  EXPECT_NEAR(dora.evaluate(tokens.data(), targets.data(), 1, 6).loss_sum, base_loss, 1e-3 * base_loss);

  cfg.use_dora = false;
  cfg.init_lora_weights = "pissa";
  TrainableModel pissa = TrainableModel::lora(base, cfg, 1);
  EXPECT_TRUE(pissa.slot(0, kQ).weight.quantized());
  EXPECT_EQ(pissa.slot(0, kQ).weight.dtype(), DType::NF4);
  // the residual re-quantized plus the adapter stays close to the base (the principal part is exact)
  EXPECT_NEAR(pissa.evaluate(tokens.data(), targets.data(), 1, 6).loss_sum, base_loss, 0.05 * base_loss);
}

// `lora train --quantize nf4` trains LoRA on a base quantized on load (the option every model-taking
// command shares), and records it for --resume.
TEST(Qlora, TrainCommandQuantizesTheBaseOnLoad) {
  test::TempDir dir;
  const test::RunResult r = test::run_cli("train -m " + test::stories_bin() + " -d " + std::string(LORA_TEST_DATA_DIR) +
                                          "/../../examples/demo/identity.jsonl -o " + dir / "out" +
                                          " --quantize nf4 --max-steps 3 --logging-steps 1");
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir / "out/adapter_model.safetensors"));
  EXPECT_NE(test::read_text(dir / "out/training_args.yaml").find("quantize: nf4"), std::string::npos);
}

// An adapter trained on a bitsandbytes NF4 folder merges into a full-precision model (said on stderr),
// as a GGUF file and as a Hugging Face folder, which compute what the quantized base + adapter computes.
TEST(Qlora, MergeCommandOnAQuantizedFolderWritesFullPrecision) {
  test::TempDir dir;
  ASSERT_EQ(test::run_cli("quantize -m " + test::stories_bin() + " -o " + dir / "nf4" + " --type nf4").exit_code, 0);
  const std::string data = std::string(LORA_TEST_DATA_DIR) + "/zuzu_stories.txt";
  const test::RunResult t = test::run_cli("train -m " + dir / "nf4" + " -d " + data + " -o " + dir / "out" +
                                          " --max-steps 30 --lr 1e-2 --logging-steps 10");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  for (const std::string out : {"merged.gguf", "merged-hf"}) {
    const test::RunResult m = test::run_cli("merge -m " + dir / "nf4" + " --adapter " + dir / "out" + " -o " + dir / out);
    ASSERT_EQ(m.exit_code, 0) << m.err;
    EXPECT_NE(m.err.find("written in full precision"), std::string::npos) << m.err;
  }
  const Model merged = load_model(dir / "merged-hf");
  EXPECT_FALSE(has_quantized_weights(merged));
  auto loss = [&](const std::string& model_and_adapter) {
    const test::RunResult e = test::run_cli("eval -m " + model_and_adapter + " -d " + data + " --json");
    EXPECT_EQ(e.exit_code, 0) << e.err;
    return nlohmann::json::parse(e.out)["loss"].get<double>();
  };
  const double on_the_fly = loss(dir / "nf4" + " --adapter " + dir / "out"), base = loss(dir / "nf4");
  EXPECT_LT(on_the_fly, 0.7 * base);
  // the quantized path multiplies in bf16; the merged model in its stored dtype
  EXPECT_NEAR(loss(dir / "merged.gguf"), on_the_fly, 0.01 * on_the_fly);
  EXPECT_NEAR(loss(dir / "merged-hf"), on_the_fly, 0.01 * on_the_fly);
}

// ----------------------------------------------------------------------------- learning

using test::greedy;

TEST(Learning, QloraReachesTheLossOfFullPrecisionLora) {
  const Model base = load_model(test::stories_bin());
  const Model base_nf4 = load_model(test::stories_bin(), LoadOptions{.quantize = "nf4"});
  ASSERT_TRUE(base_nf4.weights.layers[0].w_up.quantized());
  const test::StoriesBatch s = test::zuzu_batch(*base.tokenizer);
  LoraConfig cfg;
  cfg.r = 8;
  cfg.lora_alpha = 16;
  cfg.target_modules = {"all-linear"};
  TrainableModel lora = TrainableModel::lora(base, cfg, 7);
  TrainableModel qlora = TrainableModel::lora(base_nf4, cfg, 7);
  const auto [lora_first, lora_last] = test::fine_tune_on(lora, s);
  const auto [qlora_first, qlora_last] = test::fine_tune_on(qlora, s);
  std::printf("  LoRA  (f32 base): training loss %.4f -> %.4f\n", lora_first, lora_last);
  std::printf("  QLoRA (nf4 base): training loss %.4f -> %.4f (%.2f%% of LoRA's final loss)\n", qlora_first, qlora_last,
              100.0 * qlora_last / lora_last);
  EXPECT_LT(qlora_last, qlora_first / 2);
  EXPECT_LT(std::fabs(qlora_last - lora_last), 0.05 * lora_last);

  // merged into a full-precision copy of the dequantized base, the adapter tells of Zuzu
  const Model tuned = merged_model(qlora);
  EXPECT_FALSE(has_quantized_weights(tuned));
  const std::string story = greedy(tuned, "Once upon a time, there was a little", 40);
  std::printf("  QLoRA tuned: %s\n", story.c_str());
  EXPECT_NE(story.find("Zuzu"), std::string::npos) << story;
}

}  // namespace
}  // namespace lora
