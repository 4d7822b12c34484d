// save_hf_tokenizer: the exported tokenizer.json folder must encode exactly like its source, on the
// llama.cpp test vectors and on a story text.
#include <gtest/gtest.h>

#include "test_tokenizer_util.h"
#include "tokenizer/tokenizer.h"

namespace lora::test {
namespace {

void expect_same_encoding(const Tokenizer& source, const Tokenizer& exported, const std::string& vectors) {
  std::vector<std::string> texts;
  for (const VocabCase& c : read_vocab_cases(vectors)) texts.push_back(c.text);
  texts.push_back(read_text(std::string(LORA_TEST_DATA_DIR) + "/tinystory.txt"));
  texts.push_back("<s>Hello</s> world <unk>\n\t  spaces   and tabs\t\t, naïve café 東京 🦙 <0x41>");
  size_t same = 0;
  for (const std::string& t : texts) {
    for (bool special : {false, true}) {
      const auto a = source.encode(t, special), b = exported.encode(t, special);
      if (a == b) ++same;
      else ADD_FAILURE() << "text '" << t.substr(0, 80) << "' (parse_special=" << special << ")\n  source:   " << ids_to_string(a)
                         << "\n  exported: " << ids_to_string(b);
    }
    EXPECT_EQ(source.decode(source.encode(t)), exported.decode(exported.encode(t)));
  }
  std::printf("[ export   ] %s -> %s: %zu/%zu encodings identical\n", source.kind().c_str(), exported.kind().c_str(), same,
              texts.size() * 2);
  EXPECT_EQ(source.vocab_size(), exported.vocab_size());
  EXPECT_EQ(source.bos_id(), exported.bos_id());
  EXPECT_EQ(source.eos_id(), exported.eos_id());
  EXPECT_EQ(source.add_bos(), exported.add_bos());
  EXPECT_EQ(source.add_eos(), exported.add_eos());
  for (int32_t id = 0; id < source.vocab_size(); ++id) {
    ASSERT_EQ(source.token_bytes(id), exported.token_bytes(id)) << "token " << id;
    ASSERT_EQ(source.is_special(id), exported.is_special(id)) << "token " << id;
  }
}

std::unique_ptr<Tokenizer> export_and_reload(const Tokenizer& tok, const TempDir& dir) {
  save_hf_tokenizer(tok, dir.path());
  auto back = load_tokenizer(dir.path());
  EXPECT_TRUE(back->kind() == "hf-bpe" || back->kind() == "hf-spm-bpe") << back->kind();
  return back;
}

TEST(TokenizerExport, Llama2cTokenizerBinToHf) {
  const auto tok = load_tokenizer(asset("tokenizers/llama2/tokenizer.llama2c.bin"));
  TempDir dir;
  const auto back = export_and_reload(*tok, dir);
  expect_same_encoding(*tok, *back, "llama-spm");
  // And the originals' ids, through the exported file.
  for (const VocabCase& c : read_vocab_cases("llama-spm")) EXPECT_EQ(back->encode(c.text, false), c.ids) << c.text;
}

TEST(TokenizerExport, Stories260KTok512ToHf) {
  const auto tok = load_tokenizer(stories_tokenizer());
  ASSERT_EQ(tok->vocab_size(), 512);
  TempDir dir;
  const auto back = export_and_reload(*tok, dir);
  expect_same_encoding(*tok, *back, "llama-spm");
}

TEST(TokenizerExport, SentencePieceModelToHf) {
  const auto tok = load_tokenizer(asset("tokenizers/llama2/tokenizer.model"));
  TempDir dir;
  const auto back = export_and_reload(*tok, dir);
  expect_same_encoding(*tok, *back, "llama-spm");
}

TEST(TokenizerExport, GgufLlamaToHf) {
  const auto tok = load_tokenizer(asset("vocab-tests/ggml-vocab-llama-spm.gguf"));
  TempDir dir;
  const auto back = export_and_reload(*tok, dir);
  expect_same_encoding(*tok, *back, "llama-spm");
}

TEST(TokenizerExport, Llama3TokenizerJsonRewritten) {
  const auto tok = load_tokenizer(asset("tokenizers/llama3/tokenizer.json"));
  TempDir dir;
  const auto back = export_and_reload(*tok, dir);
  expect_same_encoding(*tok, *back, "llama-bpe");
  EXPECT_EQ(tok->chat_template(), back->chat_template());
}

TEST(TokenizerExport, QwenTokenizerJsonRewritten) {
  const auto tok = load_tokenizer(asset("tokenizers/qwen3/tokenizer.json"));
  TempDir dir;
  const auto back = export_and_reload(*tok, dir);
  expect_same_encoding(*tok, *back, "qwen2");
  EXPECT_EQ(tok->chat_template(), back->chat_template());
}

}  // namespace
}  // namespace lora::test
