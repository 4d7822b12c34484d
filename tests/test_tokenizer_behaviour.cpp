// Tokenizer behaviour beyond the test vectors: special tokens, BOS/EOS configuration, chat templates,
// decoding, streaming, NFC, GGUF "gpt2" vocabularies, the stories260K tokenizer, and the CLI.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "formats/gguf_writer.h"
#include "test_tokenizer_util.h"
#include "tokenizer/normalize.h"
#include "tokenizer/tokenizer.h"

namespace lora::test {
namespace {

using nlohmann::json;

std::string qwen_path() { return asset("tokenizers/qwen3/tokenizer.json"); }
std::string llama3_path() { return asset("tokenizers/llama3/tokenizer.json"); }

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!n || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

TEST(TokenizerSpecial, QwenChatMarkersOnlyWhenParsingSpecial) {
  const auto tok = load_tokenizer(qwen_path());
  const std::string text = "<|im_start|>user\nHi<|im_end|>";
  const auto with = tok->encode(text, true);
  ASSERT_GE(with.size(), 3u);
  EXPECT_EQ(with.front(), 151644);
  EXPECT_EQ(with.back(), 151645);
  EXPECT_TRUE(tok->is_special(151644));
  const auto without = tok->encode(text, false);
  EXPECT_EQ(std::count(without.begin(), without.end(), 151644), 0);
  EXPECT_EQ(tok->decode(without), text);
  EXPECT_EQ(tok->decode(with), text);
  EXPECT_EQ(tok->decode(with, true), "user\nHi");
  // Non-special added tokens (<think>) are matched either way, as Hugging Face does.
  EXPECT_FALSE(tok->is_special(151667));
  EXPECT_EQ(tok->encode("<think>", false), std::vector<int32_t>{151667});
}

TEST(TokenizerSpecial, Llama2SentencePieceSpecialsAndDummyPrefix) {
  for (const char* file : {"tokenizers/llama2/tokenizer.model", "tokenizers/llama2/tokenizer.llama2c.bin"}) {
    const auto tok = load_tokenizer(asset(file));
    EXPECT_EQ(tok->encode("<s>Hello", true), (std::vector<int32_t>{1, 15043})) << file;
    EXPECT_NE(tok->encode("<s>Hello", false).front(), 1) << file;
    EXPECT_EQ(tok->token_text(15043), std::string(file).find("llama2c") != std::string::npos ? " Hello" : "\xE2\x96\x81Hello");
    EXPECT_EQ(tok->token_bytes(15043), " Hello");
    EXPECT_EQ(tok->token_bytes(13), "\n");  // <0x0A>
    EXPECT_EQ(tok->decode({1, 15043, 3186, 2}, true), "Hello world");
    EXPECT_EQ(tok->encode_for_model("Hello"), (std::vector<int32_t>{1, 15043}));
  }
}

TEST(TokenizerConfig, BosEosAndTemplates) {
  const auto llama3 = load_tokenizer(llama3_path());
  EXPECT_EQ(llama3->bos_id(), 128000);
  EXPECT_EQ(llama3->eos_id(), 128001);
  EXPECT_TRUE(llama3->add_bos());
  EXPECT_EQ(llama3->encode_for_model("Hello").front(), 128000);
  EXPECT_FALSE(llama3->chat_template().empty());

  const auto qwen = load_tokenizer(qwen_path());
  EXPECT_EQ(qwen->bos_id(), -1);
  EXPECT_EQ(qwen->eos_id(), 151645);  // <|im_end|>
  EXPECT_EQ(qwen->pad_id(), 151643);  // <|endoftext|>
  EXPECT_FALSE(qwen->add_bos());
  EXPECT_EQ(qwen->encode_for_model("Hello"), qwen->encode("Hello"));
  EXPECT_NE(qwen->chat_template().find("<|im_start|>"), std::string::npos);
}

TEST(TokenizerConfig, ChatTemplateListAndExplicitFlags) {
  // An exported tok512 folder with a hand-edited tokenizer_config.json.
  TempDir dir;
  save_hf_tokenizer(*load_tokenizer(stories_tokenizer()), dir.path());
  json config = json::parse(read_text(dir / "tokenizer_config.json"));
  config["chat_template"] = json::array({{{"name", "tool_use"}, {"template", "TOOLS"}}, {{"name", "default"}, {"template", "DEFAULT"}}});
  config["add_bos_token"] = false;
  config["add_eos_token"] = true;
  write_text(dir / "tokenizer_config.json", config.dump());
  const auto tok = load_tokenizer(dir / "tokenizer.json");
  EXPECT_EQ(tok->chat_template(), "DEFAULT");
  EXPECT_FALSE(tok->add_bos());
  EXPECT_TRUE(tok->add_eos());
  const auto ids = tok->encode_for_model("Hi");
  EXPECT_EQ(ids.back(), 2);
  EXPECT_NE(ids.front(), 1);
}

TEST(TokenizerStories260K, Tok512BinAndGgufAgree) {
  const auto bin = load_tokenizer(stories_tokenizer());
  const auto gguf = load_tokenizer(stories_gguf());
  EXPECT_EQ(bin->kind(), "llama2c");
  EXPECT_EQ(gguf->kind(), "gguf-llama");
  ASSERT_EQ(bin->vocab_size(), 512);
  ASSERT_EQ(gguf->vocab_size(), 512);
  EXPECT_EQ(bin->bos_id(), 1);
  EXPECT_EQ(bin->eos_id(), 2);
  const std::string story = read_text(std::string(LORA_TEST_DATA_DIR) + "/tinystory.txt");
  const auto ids = bin->encode(story);
  EXPECT_EQ(ids, gguf->encode(story));
  EXPECT_EQ(bin->decode(ids), story);
  EXPECT_LT(ids.size(), story.size() / 2);  // real merges happen
  // Characters outside the 512 pieces fall back to bytes and still decode.
  EXPECT_EQ(bin->decode(bin->encode("東京 🦙 naïve")), "東京 🦙 naïve");
  EXPECT_EQ(bin->encode("Once upon a time"), (std::vector<int32_t>{403, 407, 261, 378}));
}

TEST(TokenizerStream, NeverEmitsHalfACharacter) {
  const std::string text = "Hi 你好, 🦙 llamas! naïve café — 東京\n";
  for (const std::string& path : {qwen_path(), stories_tokenizer(), asset("tokenizers/llama2/tokenizer.model")}) {
    const auto tok = load_tokenizer(path);
    const auto ids = tok->encode(text);
    StreamDecoder stream(*tok);
    std::string all;
    for (int32_t id : ids) {
      const std::string piece = stream.feed(id);
      EXPECT_TRUE(valid_utf8(piece)) << path << ": '" << piece << "'";
      all += piece;
    }
    all += stream.flush();
    EXPECT_EQ(all, tok->decode(ids)) << path;
    EXPECT_EQ(all, text) << path;
  }
  // An emoji cut after two of its four byte tokens: nothing until flush, then U+FFFD.
  const auto tok = load_tokenizer(stories_tokenizer());
  const auto ids = tok->encode("🦙");
  ASSERT_EQ(ids.size(), 5u);  // "▁" then four byte tokens
  StreamDecoder stream(*tok);
  EXPECT_EQ(stream.feed(ids[0]), "");  // the dummy-prefix space is stripped
  EXPECT_EQ(stream.feed(ids[1]), "");
  EXPECT_EQ(stream.feed(ids[2]), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(TokenizerNormalize, Nfc) {
  EXPECT_EQ(nfc("e\xCC\x81"), "\xC3\xA9");                              // e + combining acute -> é
  EXPECT_EQ(nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // Hangul jamo -> 각
  EXPECT_EQ(nfc("\xE2\x84\xAB"), "\xC3\x85");                            // Angstrom sign -> Å
  EXPECT_EQ(nfc("a\xCC\x81\xCC\xA8"), "\xC4\x85\xCC\x81");               // reordered: ogonek composes first
  EXPECT_EQ(nfc("\xE3\x81\xA6\xE3\x82\x99"), "\xE3\x81\xA7");            // て + dakuten -> で
  EXPECT_EQ(nfc("q\xCC\x87\xCC\xA3"), "q\xCC\xA3\xCC\x87");              // no composite: only reordered
  EXPECT_EQ(nfc("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");            // composition exclusion stays decomposed
  EXPECT_EQ(nfc("plain ascii, 東京"), "plain ascii, 東京");
  EXPECT_EQ(nfc("bad \xFF e\xCC\x81"), "bad \xFF \xC3\xA9");             // malformed bytes pass through
}

// A GGUF "gpt2" vocabulary built from a tokenizer.json (what convert_hf_to_gguf.py writes).
void write_gpt2_gguf(const std::string& json_path, const std::string& pre, const std::string& out) {
  const json j = json::parse(read_text(json_path));
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (const auto& [text, id] : j["model"]["vocab"].items()) {
    if (size_t(id.get<int>()) >= tokens.size()) tokens.resize(size_t(id.get<int>()) + 1), types.resize(tokens.size(), 1);
    tokens[size_t(id.get<int>())] = text;
  }
  for (const json& t : j["added_tokens"]) {
    const size_t id = t["id"].get<size_t>();
    if (id >= tokens.size()) tokens.resize(id + 1), types.resize(id + 1, 1);
    tokens[id] = t["content"].get<std::string>();
    types[id] = t["special"].get<bool>() ? 3 : 4;
  }
  json merges = json::array();
  for (const json& m : j["model"]["merges"])
    merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
  GGUFWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", pre);
  w.set_array("tokenizer.ggml.tokens", GGUFValueType::STRING, tokens);
  w.set_array("tokenizer.ggml.token_type", GGUFValueType::INT32, types);
  w.set_array("tokenizer.ggml.merges", GGUFValueType::STRING, merges);
  w.set_u32("tokenizer.ggml.eos_token_id", 128001);
  w.write(out);
}

TEST(TokenizerGguf, Gpt2VocabularyLlama3AndQwen) {
  TempDir dir;
  for (const auto& [json_path, pre, vectors] : {std::tuple{llama3_path(), "llama-bpe", "llama-bpe"}, std::tuple{qwen_path(), "qwen2", "qwen2"}}) {
    write_gpt2_gguf(json_path, pre, dir / "vocab.gguf");
    const auto tok = load_tokenizer(dir / "vocab.gguf");
    EXPECT_EQ(tok->kind(), "gguf-gpt2");
    const auto original = load_tokenizer(json_path);
    size_t passed = 0;
    const auto cases = read_vocab_cases(vectors);
    for (const VocabCase& c : cases) {
      const auto ids = tok->encode(c.text, false);
      if (ids == c.ids) ++passed;
      else ADD_FAILURE() << pre << ": '" << c.text << "'\n  expected " << ids_to_string(c.ids) << "\n  got      " << ids_to_string(ids);
      EXPECT_EQ(tok->decode(ids), c.text);
    }
    std::printf("[ vectors  ] %-60s %zu/%zu cases pass\n", (std::string(vectors) + " vs GGUF gpt2 vocabulary, pre=" + pre).c_str(), passed, cases.size());
    EXPECT_EQ(tok->encode("<|im_start|>x<|endoftext|>", true), original->encode("<|im_start|>x<|endoftext|>", true));
  }
}

TEST(TokenizerCli, TokenizePrintsIdsAndPieces) {
  const RunResult r = run_cli("tokenize --tokenizer " + stories_tokenizer() + " -p 'Once upon a time'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "     1 -> '<s>'\n   403 -> ' Once'\n   407 -> ' upon'\n   261 -> ' a'\n   378 -> ' time'\n");
  const RunResult ids = run_cli("tokenize --tokenizer " + stories_tokenizer() + " -p 'Once upon a time' --ids-only --no-bos");
  EXPECT_EQ(ids.out, "403 407 261 378\n");
  const RunResult model = run_cli("tokenize -m " + stories_bin() + " -p 'Once upon a time' --ids-only");
  EXPECT_EQ(model.out, "1 403 407 261 378\n") << model.err;
  TempDir dir;
  write_text(dir / "in.txt", "你好");
  const RunResult file = run_cli("tokenize --tokenizer " + asset("tokenizers/qwen3") + " -f " + (dir / "in.txt"));
  EXPECT_EQ(file.out, "108386 -> '你好'\n") << file.err;
  const RunResult bad = run_cli("tokenize --tokenizer " + (dir / "in.txt") + " -p x");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find(dir / "in.txt"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace lora::test
