// llama.cpp's tokenizer test vectors against every tokenizer file of the same vocabulary: exact ids
// for every case, and decode(encode(text)) == text.
#include <gtest/gtest.h>

#include <cstdio>

#include "formats/gguf.h"
#include "test_tokenizer_util.h"
#include "tokenizer/tokenizer.h"

namespace lora::test {
namespace {

// Encodes every case; reports the pass count and each failure, then asserts all passed.
void check_vectors(const Tokenizer& tok, const std::string& vectors, const std::string& label) {
  const std::vector<VocabCase> cases = read_vocab_cases(vectors);
  size_t passed = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::vector<int32_t> got = tok.encode(cases[i].text, false);
    if (got == cases[i].ids) {
      ++passed;
    } else {
      ADD_FAILURE() << label << " case " << i << " text '" << cases[i].text << "'\n  expected: " << ids_to_string(cases[i].ids)
                    << "\n  got:      " << ids_to_string(got);
    }
  }
  std::printf("[ vectors  ] %-60s %zu/%zu cases pass\n", label.c_str(), passed, cases.size());
  EXPECT_EQ(passed, cases.size());
}

// decode(encode(text)) == text on every case.
void check_round_trip(const Tokenizer& tok, const std::string& vectors, const std::string& label) {
  size_t passed = 0;
  const std::vector<VocabCase> cases = read_vocab_cases(vectors);
  for (const VocabCase& c : cases) {
    const std::string back = tok.decode(tok.encode(c.text, false));
    if (back == c.text) ++passed;
    else ADD_FAILURE() << label << " round trip of '" << c.text << "' gave '" << back << "'";
  }
  std::printf("[ roundtrip] %-60s %zu/%zu cases pass\n", label.c_str(), passed, cases.size());
}

TEST(TokenizerVectors, Llama3TokenizerJson) {
  const auto tok = load_tokenizer(asset("tokenizers/llama3/tokenizer.json"));
  EXPECT_EQ(tok->kind(), "hf-bpe");
  check_vectors(*tok, "llama-bpe", "llama-bpe vs tokenizers/llama3/tokenizer.json");
  check_round_trip(*tok, "llama-bpe", "llama-bpe vs tokenizers/llama3/tokenizer.json");
}

TEST(TokenizerVectors, Qwen3TokenizerJson) {
  const auto tok = load_tokenizer(asset("tokenizers/qwen3/tokenizer.json"));
  check_vectors(*tok, "qwen2", "qwen2 vs tokenizers/qwen3/tokenizer.json");
  check_round_trip(*tok, "qwen2", "qwen2 vs tokenizers/qwen3/tokenizer.json");
}

TEST(TokenizerVectors, Llama2SentencePieceModel) {
  const auto tok = load_tokenizer(asset("tokenizers/llama2/tokenizer.model"));
  EXPECT_EQ(tok->kind(), "sentencepiece");
  check_vectors(*tok, "llama-spm", "llama-spm vs tokenizers/llama2/tokenizer.model");
  check_round_trip(*tok, "llama-spm", "llama-spm vs tokenizers/llama2/tokenizer.model");
}

TEST(TokenizerVectors, Llama2Llama2cBin) {
  const auto tok = load_tokenizer(asset("tokenizers/llama2/tokenizer.llama2c.bin"));
  EXPECT_EQ(tok->kind(), "llama2c");
  check_vectors(*tok, "llama-spm", "llama-spm vs tokenizers/llama2/tokenizer.llama2c.bin");
  check_round_trip(*tok, "llama-spm", "llama-spm vs tokenizers/llama2/tokenizer.llama2c.bin");
}

TEST(TokenizerVectors, Llama2VocabOnlyGguf) {
  const auto tok = load_tokenizer(asset("vocab-tests/ggml-vocab-llama-spm.gguf"));
  EXPECT_EQ(tok->kind(), "gguf-llama");
  check_vectors(*tok, "llama-spm", "llama-spm vs vocab-tests/ggml-vocab-llama-spm.gguf");
  check_round_trip(*tok, "llama-spm", "llama-spm vs vocab-tests/ggml-vocab-llama-spm.gguf");
}

}  // namespace
}  // namespace lora::test
