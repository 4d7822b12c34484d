// The C++ forward pass against an independent float64 PyTorch implementation
// (tests/python/llama_reference.py) on the real stories260K weights and on a random-weight Hugging
// Face folder with GQA, q/k/v biases, an untied lm_head, rope_theta 1e6 and llama3 rope scaling.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "formats/model_loader.h"
#include "model/transformer.h"
#include "test_util.h"

namespace lora {
namespace {

using test::TempDir;

std::vector<int32_t> random_tokens(int64_t B, int64_t T, int32_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> d(3, vocab - 1);
  std::vector<int32_t> t(size_t(B * T));
  for (int64_t i = 0; i < B * T; ++i) t[i] = i % T == 0 ? 1 : d(rng);  // each sequence starts with BOS
  return t;
}

// Logits from the reference for B sequences of T tokens, [B*T, vocab].
std::vector<float> reference_logits(const std::string& model, const std::vector<int32_t>& tokens, int64_t T,
                                    int64_t vocab) {
  std::string arg;
  for (size_t i = 0; i < tokens.size(); ++i) arg += (i == 0 ? "" : (i % T == 0 ? "," : " ")) + std::to_string(tokens[i]);
  TempDir tmp;
  const test::RunResult r = test::run_reference("logits --model '" + model + "' --tokens '" + arg + "' --out " + (tmp / "l.f32"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::string raw = test::read_text(tmp / "l.f32");
  std::vector<float> out(raw.size() / 4);
  std::memcpy(out.data(), raw.data(), out.size() * 4);
  EXPECT_EQ(int64_t(out.size()), int64_t(tokens.size()) * vocab);
  return out;
}

double max_abs_diff(const float* a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < b.size(); ++i) worst = std::max(worst, double(std::fabs(a[i] - b[i])));
  return worst;
}

void expect_matches_reference(const std::string& path, int64_t B, int64_t T, uint64_t seed) {
  const Model m = load_model(path, LoadOptions{.load_tokenizer = false});
  const std::vector<int32_t> tokens = random_tokens(B, T, int32_t(m.config.vocab_size), seed);
  const std::vector<float> want = reference_logits(path, tokens, T, m.config.vocab_size);
  ASSERT_EQ(int64_t(want.size()), B * T * m.config.vocab_size);
  Transformer model(m, B, T);
  const Tensor& got = model.forward(tokens.data(), B, T, true);
  const double diff = max_abs_diff(got.f32(), want);
  std::printf("  %s: max |logit diff| = %.3g over %lld logits\n", path.c_str(), diff, (long long)want.size());
  EXPECT_LT(diff, 1e-4);
}

TEST(Oracle, Stories260KBinLogits) { expect_matches_reference(test::stories_bin(), 2, 48, 1); }

TEST(Oracle, Stories260KGgufLogitsEqualTheSameReference) {
  // The reference reads the .bin; the GGUF holds the same weights, so it must give the same logits.
  const Model m = load_model(test::stories_gguf(), LoadOptions{.load_tokenizer = false});
  const std::vector<int32_t> tokens = random_tokens(2, 40, 512, 2);
  const std::vector<float> want = reference_logits(test::stories_bin(), tokens, 40, 512);
  Transformer model(m, 2, 40);
  EXPECT_LT(max_abs_diff(model.forward(tokens.data(), 2, 40, true).f32(), want), 1e-4);
}

TEST(Oracle, RandomHfFolderWithGqaBiasesUntiedHeadLlama3Rope) {
  TempDir tmp;
  const std::string folder = tmp / "hf";
  const test::RunResult r = test::run_reference("make-hf --seed 7 --out " + folder);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Model m = load_model(folder, LoadOptions{.load_tokenizer = false});
  EXPECT_EQ(m.config.num_key_value_heads, 2);
  EXPECT_TRUE(m.config.attention_bias);
  EXPECT_FALSE(m.config.tie_word_embeddings);
  EXPECT_EQ(m.config.rope_scaling.type, "llama3");
  EXPECT_FLOAT_EQ(m.config.rope_theta, 1e6f);
  // 200 positions > original_max_position_embeddings (64), so every rope band is exercised.
  expect_matches_reference(folder, 3, 200, 3);
}

// The families beyond Llama, each written by the reference as its own config.json says: Qwen3's per-head q/k
// RMSNorm (with q wider than the hidden state), SmolLM3's layer without RoPE, Gemma 2's soft-capped scores and
// logits with its local layers, Gemma 3's local and global RoPE bases.
class FamilyLogits : public ::testing::TestWithParam<const char*> {};
TEST_P(FamilyLogits, MatchTheReference) {
  TempDir tmp;
  const std::string folder = tmp / "hf";
  const test::RunResult r = test::run_reference(std::string("make-hf --seed 5 --family ") + GetParam() + " --out " + folder);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Model m = load_model(folder, LoadOptions{.load_tokenizer = false});
  const std::string family = GetParam();
  EXPECT_EQ(m.config.model_type, family == "gemma3" ? "gemma3_text" : family == "phi4" ? "phi3" : family);
  if (m.config.model_type == "qwen3") {
    EXPECT_TRUE(m.config.qk_norm);
    EXPECT_EQ(m.config.q_dim(), 96);
  } else if (family == "gemma2") {
    EXPECT_TRUE(m.config.gemma_block && !m.config.qk_norm && m.config.tie_word_embeddings);
    // no layer_types in the config: every other layer is local, the first included (Gemma2Config's default)
    EXPECT_TRUE(m.config.is_sliding(0) && !m.config.is_sliding(1) && m.config.is_sliding(2) && !m.config.is_sliding(3));
    EXPECT_EQ(m.config.sliding_window, 10);
    EXPECT_EQ(m.config.attn_logit_softcapping, 5.0f);
    EXPECT_EQ(m.config.final_logit_softcapping, 3.0f);
  } else if (family == "gemma3") {
    EXPECT_TRUE(m.config.gemma_block && m.config.qk_norm && m.config.tie_word_embeddings);
    EXPECT_TRUE(m.config.is_sliding(0) && !m.config.is_sliding(1) && m.config.is_sliding(2));
    EXPECT_EQ(m.config.query_pre_attn_scalar, 32.0f);
    EXPECT_EQ(m.config.sliding_window, 10);  // shorter than the 64 positions compared
    // the checkpoint's w of x̂·(1 + w) is held as the factor
    EXPECT_FALSE(m.weights.layers[0].post_ffn_norm.empty());
    EXPECT_GT(m.weights.layers[0].post_ffn_norm.f32()[0], 0.2f);
  } else if (family == "phi3") {
    // the fused checkpoint tensors are held as their parts; LongRoPE and a window over every layer
    EXPECT_TRUE(m.config.fused_linears);
    EXPECT_EQ(m.weights.layers[0].wk.shape(), (std::vector<int64_t>{32, 64}));
    EXPECT_EQ(m.weights.layers[0].w_up.shape(), (std::vector<int64_t>{96, 64}));
    EXPECT_EQ(m.config.rope_scaling.type, "longrope");
    EXPECT_EQ(m.config.rope_scaling.original_max_position_embeddings, 32);
    EXPECT_NEAR(m.config.rope_scaling.attention_factor, std::sqrt(1 + std::log(4.0) / std::log(32.0)), 1e-6);
    EXPECT_TRUE(m.config.is_sliding(0) && m.config.is_sliding(2));
    EXPECT_EQ(m.config.rope_dim(), 16);
  } else if (family == "phi4") {  // RoPE on 12 of each head's 16 values
    EXPECT_TRUE(m.config.fused_linears && m.config.tie_word_embeddings && !m.config.has_sliding_layers());
    EXPECT_EQ(m.config.rope_dim(), 12);
  } else {
    EXPECT_FALSE(m.config.uses_rope(3));
    EXPECT_TRUE(m.config.uses_rope(2));
  }
  expect_matches_reference(folder, 2, 64, 4);
}
INSTANTIATE_TEST_SUITE_P(Oracle, FamilyLogits, ::testing::Values("qwen3", "smollm3", "gemma2", "gemma3", "phi3", "phi4"),
                         [](const ::testing::TestParamInfo<const char*>& i) { return std::string(i.param); });

}  // namespace
}  // namespace lora
