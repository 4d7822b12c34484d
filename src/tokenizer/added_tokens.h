#pragma once
// Added and special tokens ("<|im_start|>", "<s>", user-defined pieces) are cut out of the text
// before normalization and BPE and become single ids, as Hugging Face's AddedVocabulary and
// llama.cpp's tokenizer_st_partition do. Special ones only when the caller allows it (parse_special);
// non-special added tokens always.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/flat_map.h"

namespace lora {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = true;
  bool lstrip = false;  // swallow whitespace on the left
  bool rstrip = false;  // swallow whitespace on the right
  bool single_word = false;
  bool normalized = false;
};

class AddedTokenMatcher {
 public:
  struct Segment {
    std::string_view text;  // the plain text piece (id < 0)
    int32_t id = -1;        // the matched token
    size_t offset = 0;      // where the piece starts in the input
  };

  void add(AddedToken token);
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool empty() const { return tokens_.empty(); }

  // Leftmost-longest matching, as the aho-corasick automaton Hugging Face builds. Empty text pieces
  // are left out.
  std::vector<Segment> split(std::string_view text, bool parse_special) const;

 private:
  void rebuild();
  std::vector<AddedToken> tokens_;
  StringIdMap index_;  // content -> position in tokens_
  std::vector<size_t> lengths_;  // distinct content lengths, longest first
  std::array<bool, 256> first_byte_{};
};

}  // namespace lora
