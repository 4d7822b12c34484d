// What the fuzzers found (fuzz/, FUZZING.md), each as the plain case it reduces to: the error every one of
// these inputs must now give. The fuzzers' own inputs are in fuzz/regressions/ and run in scripts/fuzz.sh --ci.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "adapters/adapter_io.h"
#include "core/error.h"
#include "data/dataset_reader.h"
#include "serve/api_error.h"
#include "serve/openai_request.h"
#include "test_util.h"

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

}  // namespace
}  // namespace lora
