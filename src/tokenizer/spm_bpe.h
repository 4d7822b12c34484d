#pragma once
// SentencePiece-style BPE by piece score, for vocabularies that come without a merge list (llama2.c
// tokenizer.bin, GGUF "llama" vocabularies): the text gets a dummy-prefix space, starts as UTF-8
// characters, and the adjacent pair whose joined string is the highest-scoring piece is merged,
// leftmost on ties, until no joined pair is a piece. Characters left without a piece become
// <0xXX> byte tokens (byte fallback) or <unk>. This is SentencePiece's bpe_model.cc, llama2.c's
// encode() and llama.cpp's llm_tokenizer_spm.
#include <array>
#include <string>
#include <vector>

#include "tokenizer/flat_map.h"
#include "tokenizer/vocab_tokenizer.h"

namespace lora {

struct SpmVocab {
  std::vector<std::string> pieces;  // as stored: "▁Hello", or " Hello" in llama2.c files
  std::vector<float> scores;
  std::vector<TokenType> types;
  std::string space = "\xE2\x96\x81";  // what stands for a space inside pieces ("▁", or " ")
  bool add_dummy_prefix = true;
  // Why this vocabulary cannot be written as an exact Hugging Face BPE tokenizer ("" when it can):
  // a Unigram tokenizer.model, a normalization rule other than identity.
  std::string export_problem;
};

class SpmBpeTokenizer : public VocabTokenizer {
 public:
  // `kind`: "llama2c", "gguf-llama"... Throws lora::Error when the vocabulary is inconsistent.
  SpmBpeTokenizer(SpmVocab vocab, std::string kind);
  const SpmVocab& vocab() const { return vocab_; }

 protected:
  void encode_text(std::string_view text, bool at_text_start, std::vector<int32_t>& out) const override;

 private:
  void merge(std::string_view text, std::vector<int32_t>& out) const;
  SpmVocab vocab_;
  StringIdMap mergeable_;  // normal and user-defined pieces: what a merge may produce
  std::array<int32_t, 256> byte_ids_{};
  int32_t unk_id_ = -1;
};

}  // namespace lora
