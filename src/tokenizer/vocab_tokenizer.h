#pragma once
// What every tokenizer here shares: a table of token strings, the added/special tokens cut out of
// the text before the model runs, and decoding by concatenating each token's bytes. Subclasses
// supply only how a piece of plain text becomes ids.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/tokenizer.h"

namespace lora {

// SentencePiece / GGUF token types (same numbering as tokenizer.ggml.token_type).
enum class TokenType : uint8_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

class VocabTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const override;
  std::string token_text(int32_t id) const override;
  std::string token_bytes(int32_t id) const override;
  int32_t vocab_size() const override { return int32_t(pieces_.size()); }
  bool is_special(int32_t id) const override;
  std::string kind() const override { return kind_; }

  // Used by the loaders (one per file format) to fill in what their configuration says.
  void set_special_ids(int32_t bos, int32_t eos, int32_t pad) { bos_id_ = bos, eos_id_ = eos, pad_id_ = pad; }
  void set_add_special(bool add_bos, bool add_eos) { add_bos_ = add_bos, add_eos_ = add_eos; }
  const AddedTokenMatcher& added_tokens() const { return added_; }
  // The id of a token string (a vocabulary entry or an added token), -1 when there is none.
  int32_t find_token(std::string_view text) const;

 protected:
  // Encodes plain text (no added tokens in it). `at_text_start`: the piece begins the input.
  virtual void encode_text(std::string_view text, bool at_text_start, std::vector<int32_t>& out) const = 0;
  void check_id(int32_t id) const;

  std::string kind_;
  std::vector<std::string> pieces_;  // token_text
  std::vector<std::string> bytes_;   // token_bytes
  std::vector<uint8_t> special_;     // skipped by decode(skip_special)
  AddedTokenMatcher added_;
  // decode() drops one space at the start of the text: the dummy prefix SentencePiece adds.
  bool strip_leading_space_ = false;
};

}  // namespace lora
