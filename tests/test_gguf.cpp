// GGUF reader and writer: the real stories260K file, every metadata type, dequantization by hand.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/ggml_quant.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "test_util.h"

namespace lora {
namespace {

using test::TempDir;

TEST(Gguf, OpensStories260K) {
  const GGUFFile g = GGUFFile::open(test::stories_gguf());
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.get_int("llama.embedding_length"), 64);
  EXPECT_EQ(g.get_int("llama.feed_forward_length"), 172);
  EXPECT_EQ(g.get_int("llama.block_count"), 5);
  EXPECT_EQ(g.get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(g.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(float(g.get_float("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
  EXPECT_EQ(g.get_int("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(g.get_int("no.such.key", 42), 42);
  EXPECT_EQ(g.value_type("tokenizer.ggml.model"), GGUFValueType::STRING);
  EXPECT_EQ(g.value_type("tokenizer.ggml.tokens"), GGUFValueType::ARRAY);
  EXPECT_EQ(g.array_type("tokenizer.ggml.tokens"), GGUFValueType::STRING);
  EXPECT_EQ(g.array_type("tokenizer.ggml.scores"), GGUFValueType::FLOAT32);
  const auto& tokens = g.get_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 512u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[3], "<0x00>");

  ASSERT_EQ(g.tensors().size(), 48u);  // 5 layers x 9 + embedding, final norm, output
  const GGUFTensorInfo* q = g.find_tensor("blk.0.attn_k.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->ne, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(q->shape(), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(q->nbytes, 32u * 64 * 4);
  EXPECT_EQ(g.data_offset() % 32, 0u);

  // F32 tensors are views of the mapped file, not copies.
  const Tensor emb = g.load_tensor("token_embd.weight");
  EXPECT_EQ(emb.dtype(), DType::F32);
  EXPECT_EQ(emb.shape(), (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(emb.data(), static_cast<const void*>(g.tensor_data(*g.find_tensor("token_embd.weight"))));
}

TEST(Gguf, MissingKeysAndTensorsNameTheFile) {
  const GGUFFile g = GGUFFile::open(test::stories_gguf());
  try {
    g.get_int("llama.nope");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("stories260K.gguf"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("llama.nope"), std::string::npos);
  }
  EXPECT_THROW(g.get_string("llama.block_count"), FormatError);  // wrong type
  EXPECT_THROW(g.load_tensor("blk.9.attn_q.weight"), FormatError);
}

TEST(Gguf, OpensVocabOnlyFile) {
  const GGUFFile g = GGUFFile::open(test::asset("vocab-tests/ggml-vocab-llama-spm.gguf"));
  EXPECT_TRUE(g.tensors().empty());
  EXPECT_EQ(g.get_array("tokenizer.ggml.tokens").size(), 32000u);
  EXPECT_EQ(g.get_array("tokenizer.ggml.scores").size(), 32000u);
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_TRUE(g.metadata()["tokenizer.ggml.add_bos_token"].get<bool>());
}

TEST(Gguf, EveryMetadataTypeRoundTrips) {
  TempDir tmp;
  GGUFWriter w;
  w.set("u8", GGUFValueType::UINT8, 200);
  w.set("i8", GGUFValueType::INT8, -100);
  w.set("u16", GGUFValueType::UINT16, 60000);
  w.set("i16", GGUFValueType::INT16, -30000);
  w.set_u32("u32", 4000000000u);
  w.set_i32("i32", -2000000000);
  w.set_f32("f32", 0.1f);
  w.set_bool("bool", true);
  w.set_string("str", "h\xc3\xa9llo");
  w.set("u64", GGUFValueType::UINT64, uint64_t(1) << 62);
  w.set("i64", GGUFValueType::INT64, -(int64_t(1) << 62));
  w.set("f64", GGUFValueType::FLOAT64, 1.0 / 3.0);
  w.set_array("strs", GGUFValueType::STRING, {"a", "", "ccc"});
  w.set_array("ints", GGUFValueType::INT32, {1, -2, 3});
  w.set_array("empty", GGUFValueType::FLOAT32, nlohmann::json::array());
  w.write(tmp / "m.gguf");

  const GGUFFile g = GGUFFile::open(tmp / "m.gguf");
  EXPECT_EQ(g.get_int("u8"), 200);
  EXPECT_EQ(g.get_int("i8"), -100);
  EXPECT_EQ(g.get_int("u16"), 60000);
  EXPECT_EQ(g.get_int("i16"), -30000);
  EXPECT_EQ(g.get_int("u32"), 4000000000);
  EXPECT_EQ(g.get_int("i32"), -2000000000);
  EXPECT_EQ(float(g.get_float("f32")), 0.1f);
  EXPECT_TRUE(g.metadata()["bool"].get<bool>());
  EXPECT_EQ(g.get_string("str"), "h\xc3\xa9llo");
  EXPECT_EQ(g.get_int("u64"), int64_t(1) << 62);
  EXPECT_EQ(g.get_int("i64"), -(int64_t(1) << 62));
  EXPECT_EQ(g.get_float("f64"), 1.0 / 3.0);
  EXPECT_EQ(g.get_array("strs"), (nlohmann::json{"a", "", "ccc"}));
  EXPECT_EQ(g.get_array("ints"), (nlohmann::json{1, -2, 3}));
  EXPECT_TRUE(g.get_array("empty").empty());
  EXPECT_EQ(g.value_type("u16"), GGUFValueType::UINT16);
  EXPECT_EQ(g.value_type("f64"), GGUFValueType::FLOAT64);
  EXPECT_EQ(g.array_type("ints"), GGUFValueType::INT32);
  EXPECT_TRUE(g.tensors().empty());
}

// Blocks written by hand, so the expected values come from the format definition, not our code.
TEST(Gguf, DequantizesQ8_0AndQ4_0ByHand) {
  std::string q8(34 * 2, '\0');
  const uint16_t half = 0x3800, quarter = 0x3400;  // f16 0.5 and 0.25
  std::memcpy(&q8[0], &half, 2);
  std::memcpy(&q8[34], &quarter, 2);
  for (int j = 0; j < 32; ++j) {
    q8[2 + j] = char(int8_t(j - 16));
    q8[36 + j] = char(int8_t(j == 0 ? -128 : 127 - j));
  }
  std::string q4(18, '\0');
  std::memcpy(&q4[0], &quarter, 2);
  for (int j = 0; j < 16; ++j) q4[2 + j] = char(uint8_t(j | ((15 - j) << 4)));  // low nibble j, high 15-j

  TempDir tmp;
  GGUFWriter w;
  w.add_tensor_raw("q8", GGMLType::Q8_0, {32, 2}, q8);
  w.add_tensor_raw("q4", GGMLType::Q4_0, {32}, q4);
  w.write(tmp / "q.gguf");
  const GGUFFile g = GGUFFile::open(tmp / "q.gguf");

  const Tensor q8_view = g.load_tensor("q8");
  EXPECT_EQ(q8_view.dtype(), DType::Q8_0);  // kept quantized, a view of the file
  const Tensor a = q8_view.to(DType::F32);
  ASSERT_EQ(a.dtype(), DType::F32);
  ASSERT_EQ(a.shape(), (std::vector<int64_t>{2, 32}));
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(a.f32()[j], float(j - 16) * 0.5f) << j;
    EXPECT_EQ(a.f32()[32 + j], float(j == 0 ? -128 : 127 - j) * 0.25f) << j;
  }
  const Tensor b = g.load_tensor("q4").to(DType::F32);
  ASSERT_EQ(b.shape(), (std::vector<int64_t>{32}));
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(b.f32()[j], float(j - 8) * 0.25f) << j;
    EXPECT_EQ(b.f32()[16 + j], float(15 - j - 8) * 0.25f) << j;
  }
}

TEST(Gguf, QuantizersMatchGgmlReference) {
  // 1..32 scaled: the Q8_0 scale is max/127 and every value is within half a step of its code.
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = float(i % 32 - 13) * 0.37f;
  std::string blocks(34 * 2, '\0');
  ggml_quantize(DType::Q8_0, x.data(), 64, blocks.data());
  std::vector<float> y(64);
  ggml_dequantize(DType::Q8_0, blocks.data(), 64, y.data());
  const float d8 = 18 * 0.37f / 127;
  for (int i = 0; i < 64; ++i) EXPECT_NEAR(y[i], x[i], d8 * 0.51f + 1e-3f) << i;

  // Q4_0 maps the largest-magnitude value exactly onto code 0 (= -8 * d).
  std::string q4(18 * 2, '\0');
  ggml_quantize(DType::Q4_0, x.data(), 64, q4.data());
  ggml_dequantize(DType::Q4_0, q4.data(), 64, y.data());
  EXPECT_NEAR(y[31], x[31], 1e-2f);  // 18 * 0.37, the max magnitude
  const float d4 = 18 * 0.37f / 8;
  for (int i = 0; i < 64; ++i) EXPECT_NEAR(y[i], x[i], d4 * 0.51f + 1e-2f) << i;
}

TEST(Gguf, F16AndBf16Tensors) {
  TempDir tmp;
  Tensor h(DType::F16, {2, 3});
  Tensor b(DType::BF16, {3});
  const float hv[6] = {1.0f, -2.5f, 0.0f, 65504.0f, 1e-3f, -0.125f};
  for (int i = 0; i < 6; ++i) h.data_as<uint16_t>()[i] = f32_to_f16(hv[i]);
  for (int i = 0; i < 3; ++i) b.data_as<uint16_t>()[i] = f32_to_bf16(float(i) * 1.5f);
  GGUFWriter w;
  w.set_u32("general.alignment", 64);
  w.add_tensor("h", h);
  w.add_tensor("b", b);
  w.write(tmp / "f.gguf");

  const GGUFFile g = GGUFFile::open(tmp / "f.gguf");
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(g.data_offset() % 64, 0u);
  EXPECT_EQ(g.find_tensor("b")->offset % 64, 0u);
  const Tensor hl = g.load_tensor("h");
  ASSERT_EQ(hl.dtype(), DType::F32);
  EXPECT_EQ(hl.shape(), (std::vector<int64_t>{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(hl.f32()[i], f16_to_f32(f32_to_f16(hv[i])));
  const Tensor bl = g.load_tensor("b");
  ASSERT_EQ(bl.dtype(), DType::BF16);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(bf16_to_f32(bl.data_as<uint16_t>()[i]), float(i) * 1.5f);
}

// Lazy tensors are made only while the file is written, in order, and give the same bytes as eager ones; a
// maker that returns another size or type is refused with the tensor named.
TEST(Gguf, LazyTensorsAreMadeWhenWrittenAndMustMatchTheirEntry) {
  TempDir tmp;
  Tensor x(DType::F32, {4, 32});
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = float(i) * 0.25f - 3.0f;
  GGUFWriter eager, lazy;
  eager.add_tensor("x", x);
  eager.add_tensor("q", ggml_quantize_tensor(x, DType::Q8_0));
  std::vector<std::string> made;
  lazy.add_tensor_lazy("x", DType::F32, {4, 32}, [&] { made.push_back("x"); return x; });
  lazy.add_tensor_lazy("q", DType::Q8_0, {4, 32}, [&] { made.push_back("q"); return ggml_quantize_tensor(x, DType::Q8_0); });
  EXPECT_TRUE(made.empty());
  EXPECT_EQ(lazy.to_bytes(), eager.to_bytes());
  EXPECT_EQ(made, (std::vector<std::string>{"x", "q"}));

  GGUFWriter wrong;
  wrong.add_tensor_lazy("w", DType::F32, {4, 32}, [&] { return Tensor(DType::F32, {4, 16}); });
  try {
    wrong.write(tmp / "w.gguf");
    FAIL() << "wrote a tensor of the wrong size";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("GGUF tensor 'w': made 256 bytes of f32, its entry says 512"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(tmp / "w.gguf"));
}

TEST(Gguf, UnreadableTypeFailsOnLoadNotOnOpen) {
  TempDir tmp;
  GGUFWriter w;
  w.add_tensor_raw("k", GGMLType(16), {256}, std::string(66, '\0'));  // IQ2_XXS: sizes known, decoding not
  w.write(tmp / "k.gguf");
  const GGUFFile g = GGUFFile::open(tmp / "k.gguf");
  EXPECT_EQ(g.find_tensor("k")->nbytes, 66u);
  try {
    g.load_tensor("k");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("IQ2_XXS"), std::string::npos);
  }
}

}  // namespace
}  // namespace lora
