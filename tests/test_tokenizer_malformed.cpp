// Damaged or unsupported tokenizer files: always a lora::FormatError naming the file, never a
// crash (these tests also run under ASan + UBSan).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf_writer.h"
#include "test_tokenizer_util.h"
#include "tokenizer/tokenizer.h"

namespace lora::test {
namespace {

using nlohmann::json;

// Loading `path` must throw a FormatError for that path whose message contains `needle`.
void expect_format_error(const std::string& path, const std::string& needle = "") {
  try {
    load_tokenizer(path);
    ADD_FAILURE() << path << ": loaded without error";
  } catch (const FormatError& e) {
    EXPECT_EQ(e.path(), path) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    if (!needle.empty()) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << path << ": expected FormatError, got: " << e.what();
  }
}

std::string exported_tok512_json(const TempDir& dir) {
  save_hf_tokenizer(*load_tokenizer(stories_tokenizer()), dir / "src");
  return read_text(dir / "src/tokenizer.json");
}

TEST(TokenizerMalformed, TruncatedJson) {
  TempDir dir;
  const std::string full = exported_tok512_json(dir);
  for (size_t cut : {size_t(1), size_t(10), full.size() / 3, full.size() / 2, full.size() - 2}) {
    const std::string path = dir / ("cut" + std::to_string(cut) + ".json");
    write_text(path, full.substr(0, cut));
    expect_format_error(path, "JSON");
  }
}

TEST(TokenizerMalformed, UnsupportedOrBrokenJsonContent) {
  TempDir dir;
  const json base = json::parse(exported_tok512_json(dir));
  auto check = [&](const std::string& name, const json& j, const std::string& needle) {
    write_text(dir / name, j.dump());
    expect_format_error(dir / name, needle);
  };
  check("wordpiece.json", json{{"model", {{"type", "WordPiece"}, {"vocab", json::object()}}}}, "WordPiece");
  check("nomodel.json", json{{"version", "1.0"}}, "model");
  check("array.json", json::array({1, 2}), "model");
  json j = base;
  j["model"]["merges"].push_back("zzz qqq");
  check("unknown_merge.json", j, "zzz");
  j = base;
  j["model"]["merges"].push_back("t h");  // both known, but "th" is not a token
  check("merge_result.json", j, "not in the vocabulary");
  j = base;
  j["model"]["merges"].push_back(42);
  check("merge_type.json", j, "merge");
  j = base;
  j["model"]["vocab"]["x"] = "seven";
  check("vocab_id.json", j, "non-integer");
  j = base;
  j["normalizer"] = {{"type", "NFKD"}};
  check("normalizer.json", j, "NFKD");
  j = base;
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  check("regex.json", j, "regex");
  j = base;
  j["decoder"] = {{"type", "CTC"}};
  check("decoder.json", j, "CTC");
  j = base;
  j["added_tokens"].push_back({{"id", "x"}, {"content", "<x>"}});
  check("added.json", j, "added token");
  j = base;
  j["model"]["unk_token"] = "<nope>";
  check("unk.json", j, "<nope>");
}

TEST(TokenizerMalformed, TruncatedLlama2cBin) {
  TempDir dir;
  const std::string full = read_text(stories_tokenizer());
  // Cuts inside a record (a cut exactly between records leaves a valid, shorter vocabulary).
  for (size_t cut : {size_t(2), size_t(6), size_t(13), size_t(101), size_t(1001), full.size() / 2 + 3, full.size() - 1}) {
    const std::string path = dir / ("tok" + std::to_string(cut) + ".bin");
    write_text(path, full.substr(0, cut));
    expect_format_error(path);
  }
  std::string bad = full;
  const int32_t huge = 1 << 30;
  std::memcpy(bad.data() + 8, &huge, 4);  // the first token's length
  write_text(dir / "len.bin", bad);
  expect_format_error(dir / "len.bin");
}

TEST(TokenizerMalformed, TruncatedSentencePieceModel) {
  TempDir dir;
  const std::string full = read_text(asset("tokenizers/llama2/tokenizer.model"));
  for (size_t cut : {size_t(1), size_t(3), size_t(1000), full.size() / 2, full.size() - 300, full.size() - 5}) {
    const std::string path = dir / ("cut" + std::to_string(cut) + ".model");
    write_text(path, full.substr(0, cut));
    expect_format_error(path);
  }
}

TEST(TokenizerMalformed, GarbageEmptyAndMissing) {
  TempDir dir;
  write_text(dir / "empty.json", "");
  expect_format_error(dir / "empty.json");
  std::string garbage(4096, '\0');
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = char((i * 2654435761u) >> 13);
  write_text(dir / "tokenizer.bin", garbage);
  expect_format_error(dir / "tokenizer.bin");
  write_text(dir / "x.model", garbage);
  expect_format_error(dir / "x.model");
  std::filesystem::create_directories(dir / "folder");
  expect_format_error(dir / "folder", "no tokenizer");
  expect_format_error(dir / "does-not-exist.json");
}

TEST(TokenizerMalformed, BadGgufTokenizerMetadata) {
  TempDir dir;
  auto write = [&](const std::string& name, auto&& fill) {
    GGUFWriter w;
    w.set_string("general.architecture", "llama");
    fill(w);
    w.write(dir / name);
    return dir / name;
  };
  expect_format_error(write("none.gguf", [](GGUFWriter&) {}), "tokenizer.ggml.model");
  expect_format_error(write("bert.gguf", [](GGUFWriter& w) {
                        w.set_string("tokenizer.ggml.model", "bert");
                        w.set_array("tokenizer.ggml.tokens", GGUFValueType::STRING, json::array({"a"}));
                      }),
                      "bert");
  expect_format_error(write("scores.gguf", [](GGUFWriter& w) {
                        w.set_string("tokenizer.ggml.model", "llama");
                        w.set_array("tokenizer.ggml.tokens", GGUFValueType::STRING, json::array({"<unk>", "a"}));
                        w.set_array("tokenizer.ggml.scores", GGUFValueType::FLOAT32, json::array({0.0}));
                      }),
                      "scores");
  expect_format_error(write("merges.gguf", [](GGUFWriter& w) {
                        w.set_string("tokenizer.ggml.model", "gpt2");
                        w.set_array("tokenizer.ggml.tokens", GGUFValueType::STRING, json::array({"a", "b", "ab"}));
                        w.set_array("tokenizer.ggml.merges", GGUFValueType::STRING, json::array({"a b", "a c"}));
                      }),
                      "'c'");
  expect_format_error(write("pre.gguf", [](GGUFWriter& w) {
                        w.set_string("tokenizer.ggml.model", "gpt2");
                        w.set_string("tokenizer.ggml.pre", "martian");
                        w.set_array("tokenizer.ggml.tokens", GGUFValueType::STRING, json::array({"a"}));
                        w.set_array("tokenizer.ggml.merges", GGUFValueType::STRING, json::array());
                      }),
                      "martian");
}

TEST(TokenizerMalformed, OutOfRangeIdsAndInvalidText) {
  const auto tok = load_tokenizer(stories_tokenizer());
  EXPECT_THROW(tok->decode({5, 512}), Error);
  EXPECT_THROW(tok->decode({-1}), Error);
  EXPECT_THROW(tok->token_text(100000), Error);
  // Malformed UTF-8 input is tokenized byte by byte, not rejected, and decodes back unchanged.
  const std::string bad = "ok \xFF\xC3 end \xE6\x97";
  for (const std::string& path : {stories_tokenizer(), asset("tokenizers/qwen3/tokenizer.json")}) {
    const auto t = load_tokenizer(path);
    EXPECT_EQ(t->decode(t->encode(bad)), bad) << path;
  }
}

}  // namespace
}  // namespace lora::test
