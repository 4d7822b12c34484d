#pragma once
// Byte-pair encoding by merge rank, as Hugging Face's `BPE` model does it: a word starts as single
// symbols (bytes for byte-level vocabularies, UTF-8 characters otherwise) and the adjacent pair whose
// merge comes first in the merge list is joined, leftmost first on ties, until no pair has a merge.
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/flat_map.h"

namespace lora {

class BpeModel {
 public:
  struct Options {
    bool byte_symbols = false;   // initial symbols are single bytes (byte-level BPE)
    bool ignore_merges = false;  // a word that is itself a vocabulary entry is one token (Llama 3)
    bool byte_fallback = false;  // unknown characters become <0xXX> byte tokens (SentencePiece style)
    bool fuse_unk = false;       // consecutive unknown characters become one unk token
    int32_t unk_id = -1;         // -1: unknown characters are dropped, as Hugging Face does
  };

  void set_options(const Options& options) { options_ = options; }
  const Options& options() const { return options_; }

  // `text` is the token in model space (raw bytes for byte-level vocabularies) and must outlive the model.
  void add_token(std::string_view text, int32_t id) { vocab_.insert(text, id); }
  // Merges get ranks in the order they are added. A repeated pair takes the later rank, as in
  // Hugging Face (the merge table is built by inserting into a map).
  void add_merge(int32_t left, int32_t right, int32_t merged) {
    merges_.insert(left, right, {n_merges_++, merged});
  }
  // Byte-fallback tokens, looked up by their "<0xXX>" spelling once the vocabulary is complete.
  void resolve_byte_tokens();

  int32_t token_id(std::string_view text) const { return vocab_.find(text); }
  const MergeMap::Merge* find_merge(int32_t left, int32_t right) const { return merges_.find(left, right); }
  size_t n_merges() const { return size_t(n_merges_); }
  void reserve(size_t n_tokens) { vocab_.reserve(n_tokens); }

  // Appends the ids of one pre-tokenized word to `out`.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

 private:
  void initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const;
  void merge_short(std::vector<int32_t>& symbols) const;
  void merge_long(std::vector<int32_t>& symbols) const;

  Options options_;
  StringIdMap vocab_;
  MergeMap merges_;
  int32_t n_merges_ = 0;
  std::array<int32_t, 256> byte_tokens_{};
};

}  // namespace lora
