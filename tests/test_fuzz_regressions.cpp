// What the fuzzers found (fuzz/, FUZZING.md), each as the plain case it reduces to: the error every one of
// these inputs must now give. The fuzzers' own inputs are in fuzz/regressions/ and run in scripts/fuzz.sh --ci.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "adapters/adapter_io.h"
#include "core/error.h"
#include "data/dataset_reader.h"
#include "formats/model_loader.h"
#include "serve/api_error.h"
#include "serve/openai_request.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace lora {
namespace {

using test::TempDir;

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// nlohmann's parser throws out_of_range, not parse_error, for a number past the largest double.
TEST(FuzzRegression, RequestBodyWithANumberPastADoubleIs400) {
  for (const char* body : {R"({"model": "m", "messages": [], "temperature": 1e309})", R"({"lora_name": 1e309})"}) {
    try {
      if (has(body, "lora_name")) serve::parse_load_adapter_request(body);
      else serve::parse_chat_request(body);
      FAIL() << "parsed: " << body;
    } catch (const serve::ApiError& e) {
      EXPECT_EQ(e.status, 400) << body;
      EXPECT_TRUE(has(e.what(), "not valid JSON")) << e.what();
      EXPECT_TRUE(has(e.what(), "number overflow")) << e.what();
    }
  }
}

// A content part whose "type" is a number: json::value("type", "") threw type_error, a bare exception.
TEST(FuzzRegression, ContentPartWithANumberForItsTypeIs400) {
  for (const char* body : {R"({"model": "m", "messages": [{"role": "user", "content": [{"type": 4, "text": "x"}]}]})",
                           R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 4}]}]})"}) {
    try {
      serve::parse_chat_request(body);
      FAIL() << "parsed: " << body;
    } catch (const serve::ApiError& e) {
      EXPECT_EQ(e.status, 400) << body;
      EXPECT_TRUE(has(e.what(), "messages[0].content")) << e.what();
    }
  }
}

TEST(FuzzRegression, DatasetWithANumberPastADoubleNamesTheFileAndLine) {
  TempDir tmp;
  test::write_text(tmp / "d.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"x\", \"n\": 1e309}\n");
  const std::string jsonl = error_of([&] { read_dataset_file(tmp / "d.jsonl"); });
  EXPECT_TRUE(has(jsonl, tmp / "d.jsonl:2: not valid JSON")) << jsonl;
  test::write_text(tmp / "d.json", "[{\"instruction\": \"a\", \"output\": 1e309}]");
  const std::string json = error_of([&] { read_dataset_file(tmp / "d.json"); });
  EXPECT_TRUE(has(json, tmp / "d.json: not valid JSON")) << json;
}

TEST(FuzzRegression, AdapterConfigKeyOfTheWrongTypeNamesTheFile) {
  TempDir tmp;
  for (const char* config : {R"({"peft_type": 85, "r": 2})", R"({"r": 2, "fan_in_fan_out": "yes"})"}) {
    test::write_text(tmp / "adapter_config.json", config);
    const std::string e = error_of([&] { read_adapter(tmp.path()); });
    EXPECT_TRUE(has(e, tmp / "adapter_config.json: invalid adapter_config.json: [json.exception.type_error.302]")) << config << ": " << e;
  }
}

// nlohmann casts a double to int64_t / float without a range check (undefined behaviour past the range).
TEST(FuzzRegression, AdapterConfigNumberPastItsTypesRangeNamesTheKey) {
  TempDir tmp;
  test::write_text(tmp / "adapter_config.json", R"({"r": 2.18e20, "target_modules": ["q_proj"]})");
  const std::string e = error_of([&] { read_adapter(tmp.path()); });
  EXPECT_TRUE(has(e, tmp / "adapter_config.json: r: the number 2.18e+20 is out of range")) << e;
  test::write_text(tmp / "adapter_config.json", R"({"r": 2, "alpha_pattern": {"q_proj": -1e300}, "target_modules": ["q_proj"]})");
  const std::string alpha = error_of([&] { read_adapter(tmp.path()); });
  EXPECT_TRUE(has(alpha, "alpha_pattern.q_proj: the number -1e+300 is out of range")) << alpha;
}

// Not a fuzzer's find but the same class: Sequence normalizers nested 200,000 deep would overflow the stack of
// the recursive readers; refused before parsing.
// A tokenizer.model whose SentencePiece library throws (darts-clone: "failed to insert key: zero-length key")
// instead of returning a bad status: the committed fuzz input, loaded as a file.
TEST(FuzzRegression, SentencePieceModelTheLibraryThrowsOnNamesTheFile) {
  TempDir tmp;
  const std::string bytes = test::read_text(std::string(LORA_SOURCE_DIR) + "/fuzz/regressions/fuzz_sp_model/finding-6-zero-length-piece");
  test::write_text(tmp / "tokenizer.model", bytes);
  const std::string e = error_of([&] { load_tokenizer(tmp / "tokenizer.model"); });
  EXPECT_TRUE(has(e, tmp / "tokenizer.model")) << e;
  EXPECT_TRUE(has(e, "zero-length key")) << e;
}

// A config.json whose quantization_config.quant_method is `true`: nlohmann's type_error escaped the reader.
// The committed fuzz input, its two parts written as a folder's config.json and model.safetensors.
TEST(FuzzRegression, HfFolderWithAQuantMethodNotAStringNamesTheField) {
  TempDir tmp;
  const std::string bytes =
      test::read_text(std::string(LORA_SOURCE_DIR) + "/fuzz/regressions/fuzz_hf_folder/finding-7-quant-method-not-a-string");
  const size_t cut = bytes.find("LORAFUZZST");
  ASSERT_NE(cut, std::string::npos);
  test::write_text(tmp / "config.json", bytes.substr(0, cut));
  test::write_text(tmp / "model.safetensors", bytes.substr(cut + 10));
  LoadOptions options;
  options.load_tokenizer = false;
  const std::string e = error_of([&] { load_model(tmp.path(), options); });
  EXPECT_TRUE(has(e, tmp / "config.json: quantization_config.quant_method 'true' is not supported")) << e;
}

TEST(FuzzRegression, TokenizerJsonNestedTooDeepIsAnError) {
  TempDir tmp;
  std::string normalizer = R"({"type": "NFC"})";
  std::string deep;
  for (int i = 0; i < 200000; ++i) deep += R"({"type": "Sequence", "normalizers": [)";
  deep += normalizer;
  for (int i = 0; i < 200000; ++i) deep += "]}";
  test::write_text(tmp / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": )" + deep + "}");
  const std::string e = error_of([&] { load_tokenizer(tmp / "tokenizer.json"); });
  EXPECT_TRUE(has(e, tmp / "tokenizer.json: JSON nested deeper than 128 levels")) << e;
  // 40 levels of Sequence (deeper than any real tokenizer) still load, brackets inside strings are not counted
  std::string ok;
  for (int i = 0; i < 40; ++i) ok += R"({"type": "Sequence", "normalizers": [)";
  ok += normalizer;
  for (int i = 0; i < 40; ++i) ok += "]}";
  test::write_text(tmp / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"[[[[{{{{": 0, "a": 1}, "merges": []}, "normalizer": )" +
                                               ok + "}");
  EXPECT_EQ(error_of([&] { load_tokenizer(tmp / "tokenizer.json"); }), "");
}

}  // namespace
}  // namespace lora
