// llama2.c checkpoints, the RoPE row permutation, and agreement with the GGUF conversion of the same model.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/gguf_model.h"
#include "formats/llama2c.h"
#include "formats/rope_layout.h"
#include "formats/weight_names.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace lora {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

LoadOptions no_tokenizer() {
  LoadOptions o;
  o.load_tokenizer = false;
  return o;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

TEST(RopeLayout, SmallExampleAndInverse) {
  // Two heads of size 4: interleaved rows (0 1 2 3 | 4 5 6 7) pair (0,1),(2,3); rotate_half pairs (0,2),(1,3).
  Tensor w(DType::F32, {8, 2});
  for (int r = 0; r < 8; ++r) {
    w.f32()[2 * r] = float(r);
    w.f32()[2 * r + 1] = float(100 + r);
  }
  const Tensor half = rope_interleaved_to_half(w, 2);
  const float expected_rows[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  for (int r = 0; r < 8; ++r) {
    EXPECT_EQ(half.f32()[2 * r], expected_rows[r]) << r;
    EXPECT_EQ(half.f32()[2 * r + 1], 100 + expected_rows[r]) << r;
  }
  EXPECT_TRUE(same_bytes(rope_half_to_interleaved(half, 2), w));
  EXPECT_FALSE(same_bytes(half, w));
}

TEST(RopeLayout, BothDirectionsAreInversesForAnyDtypeAndBias) {
  Tensor w(DType::BF16, {48, 5});  // 4 heads of 12
  for (int64_t i = 0; i < w.numel(); ++i) w.data_as<uint16_t>()[i] = uint16_t(i * 7919);
  EXPECT_TRUE(same_bytes(rope_half_to_interleaved(rope_interleaved_to_half(w, 4), 4), w));
  EXPECT_TRUE(same_bytes(rope_interleaved_to_half(rope_half_to_interleaved(w, 4), 4), w));
  Tensor b(DType::F32, {48});
  for (int i = 0; i < 48; ++i) b.f32()[i] = float(i);
  const Tensor bh = rope_interleaved_to_half(b, 4);
  EXPECT_EQ(bh.f32()[12 + 1], 12 + 2);  // head 1, rotate_half row 1 = interleaved row 2
  EXPECT_EQ(bh.f32()[12 + 6], 12 + 1);  // head 1, row d/2 = interleaved row 1
  EXPECT_TRUE(same_bytes(rope_half_to_interleaved(bh, 4), b));
  EXPECT_THROW(rope_interleaved_to_half(b, 5), Error);
}

TEST(Llama2c, LoadsStories260K) {
  const Model m = load_llama2c(test::stories_bin(), no_tokenizer());
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.num_hidden_layers, 5);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_position_embeddings, 512);
  EXPECT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_EQ(c.rope_theta, 10000.0f);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);
  EXPECT_EQ(m.source_format, "llama2c");
  EXPECT_EQ(m.tokenizer, nullptr);

  const ModelWeights& w = m.weights;
  ASSERT_EQ(w.layers.size(), 5u);
  EXPECT_EQ(w.lm_head.data(), w.tok_embeddings.data());
  EXPECT_EQ(w.layers[4].wk.shape(), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(w.layers[4].w_down.shape(), (std::vector<int64_t>{64, 172}));
  // 260K parameters, as the name says (embedding shared with the classifier).
  EXPECT_EQ(m.parameter_count(), 512 * 64 + 5 * (64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 64 + 3 * 172 * 64) + 64);

  // Raw file values: the embedding is read in place, wq rows are moved to rotate_half order.
  const auto file = MappedFile::open(test::stories_bin());
  const float* raw = reinterpret_cast<const float*>(file->data() + kLlama2cHeaderSize);
  EXPECT_EQ(std::memcmp(w.tok_embeddings.data(), raw, 512 * 64 * 4), 0);
  const float* raw_wq0 = raw + 512 * 64 + 5 * 64;
  const int64_t d = 8;
  for (int64_t h = 0; h < 8; ++h)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < d / 2; ++i)
        ASSERT_EQ(std::memcmp(w.layers[0].wq.f32() + (h * d + j * d / 2 + i) * 64, raw_wq0 + (h * d + 2 * i + j) * 64, 64 * 4), 0);
  // The last tensor, rms_final, sits right before the unused freq_cis blocks.
  const float* raw_final = reinterpret_cast<const float*>(file->data() + file->size()) - 512 * 8 - 64;
  EXPECT_EQ(std::memcmp(w.norm.data(), raw_final, 64 * 4), 0);
}

TEST(Llama2c, HeaderAndExpectedSize) {
  const auto file = MappedFile::open(test::stories_bin());
  const auto h = parse_llama2c_header(file->data(), file->size());
  ASSERT_TRUE(h);
  EXPECT_EQ(h->dim, 64);
  EXPECT_EQ(h->seq_len, 512);
  EXPECT_EQ(h->expected_file_size(), 1056540u);
  EXPECT_EQ(h->expected_file_size(), file->size());
  Llama2cHeader unshared = *h;
  unshared.vocab_size = -512;
  EXPECT_EQ(unshared.expected_file_size(), 1056540u + 512 * 64 * 4);
}

TEST(Llama2c, UnsharedClassifier) {
  // Same weights with a negative vocab_size and an explicit (different) classifier appended.
  TempDir tmp;
  std::string bytes = test::read_text(test::stories_bin());
  const int32_t neg = -512;
  std::memcpy(&bytes[20], &neg, 4);
  std::string wcls(512 * 64 * 4, '\0');
  for (size_t i = 0; i < wcls.size() / 4; ++i) {
    const float v = float(i) * 1e-4f;
    std::memcpy(&wcls[4 * i], &v, 4);
  }
  test::write_text(tmp / "unshared.bin", bytes + wcls);
  const Model m = load_llama2c(tmp / "unshared.bin", no_tokenizer());
  EXPECT_FALSE(m.config.tie_word_embeddings);
  EXPECT_EQ(m.config.vocab_size, 512);
  EXPECT_NE(m.weights.lm_head.data(), m.weights.tok_embeddings.data());
  EXPECT_EQ(m.weights.lm_head.f32()[12345], float(12345) * 1e-4f);
}

TEST(Llama2c, FindsTokenizerBesideTheCheckpoint) {
  TempDir tmp;
  fs::copy_file(test::stories_bin(), tmp / "model.bin");
  EXPECT_EQ(find_llama2c_tokenizer(tmp / "model.bin", 512), "");
  EXPECT_EQ(load_llama2c(tmp / "model.bin").tokenizer, nullptr);  // none found: no tokenizer, no error
  fs::copy_file(test::stories_tokenizer(), tmp / "tok512.bin");
  EXPECT_EQ(find_llama2c_tokenizer(tmp / "model.bin", 512), tmp / "tok512.bin");
  fs::copy_file(test::stories_tokenizer(), tmp / "tokenizer.bin");
  EXPECT_EQ(find_llama2c_tokenizer(tmp / "model.bin", 512), tmp / "tokenizer.bin");  // preferred
  EXPECT_EQ(load_llama2c(tmp / "model.bin", no_tokenizer()).tokenizer, nullptr);

  std::shared_ptr<Tokenizer> tok;
  try {
    tok = load_llama2c(test::stories_bin()).tokenizer;
  } catch (const Error& e) {
    if (std::string(e.what()).find("not implemented") != std::string::npos) GTEST_SKIP() << "tokenizer stub";
    throw;
  }
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 512);
}

// The GGUF asset is a conversion of the .bin whose tensor bytes are the .bin's (interleaved q/k rows),
// so after the same permutation both loaders must produce bit-identical weights.
TEST(Llama2c, MatchesGgufConversionBitForBit) {
  const Model a = load_llama2c(test::stories_bin(), no_tokenizer());
  const Model b = load_gguf_model(test::stories_gguf(), no_tokenizer());
  const ModelConfig &ca = a.config, &cb = b.config;
  EXPECT_EQ(cb.architecture, ca.architecture);
  EXPECT_EQ(cb.model_type, ca.model_type);
  EXPECT_EQ(cb.hidden_size, ca.hidden_size);
  EXPECT_EQ(cb.intermediate_size, ca.intermediate_size);
  EXPECT_EQ(cb.num_hidden_layers, ca.num_hidden_layers);
  EXPECT_EQ(cb.num_attention_heads, ca.num_attention_heads);
  EXPECT_EQ(cb.num_key_value_heads, ca.num_key_value_heads);
  EXPECT_EQ(cb.head_dim, ca.head_dim);
  EXPECT_EQ(cb.vocab_size, ca.vocab_size);
  EXPECT_EQ(cb.rms_norm_eps, ca.rms_norm_eps);
  EXPECT_EQ(cb.rope_theta, ca.rope_theta);
  EXPECT_EQ(cb.bos_token_id, ca.bos_token_id);
  EXPECT_EQ(cb.eos_token_id, ca.eos_token_id);
  EXPECT_EQ(cb.attention_bias, ca.attention_bias);
  // The conversion stored the shared classifier as its own output.weight and a 2048 context.
  EXPECT_FALSE(cb.tie_word_embeddings);
  EXPECT_EQ(cb.max_position_embeddings, 2048);
  EXPECT_EQ(b.source_format, "gguf");

  EXPECT_TRUE(same_bytes(a.weights.tok_embeddings, b.weights.tok_embeddings));
  EXPECT_TRUE(same_bytes(a.weights.norm, b.weights.norm));
  EXPECT_TRUE(same_bytes(a.weights.lm_head, b.weights.lm_head));
  for (size_t i = 0; i < a.weights.layers.size(); ++i)
    for (const LayerTensorSpec& s : layer_tensor_specs(ca))
      EXPECT_TRUE(same_bytes(a.weights.layers[i].*s.member, b.weights.layers[i].*s.member)) << i << " " << s.hf_name;
}

}  // namespace
}  // namespace lora
