#include "tokenizer/vocab_tokenizer.h"

#include "core/error.h"

namespace lora {

std::vector<int32_t> VocabTokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (added_.empty()) {
    if (!text.empty()) encode_text(text, true, ids);
    return ids;
  }
  for (const AddedTokenMatcher::Segment& s : added_.split(text, parse_special)) {
    if (s.id >= 0) ids.push_back(s.id);
    else encode_text(s.text, s.offset == 0, ids);
  }
  return ids;
}

void VocabTokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= int32_t(pieces_.size()))
    fail("token id {} is out of range for a {} tokenizer with {} tokens", id, kind_, pieces_.size());
}

std::string VocabTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  for (int32_t id : ids) {
    check_id(id);
    if (skip_special && special_[size_t(id)]) continue;
    out += bytes_[size_t(id)];
  }
  if (strip_leading_space_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

std::string VocabTokenizer::token_text(int32_t id) const {
  check_id(id);
  return pieces_[size_t(id)];
}

std::string VocabTokenizer::token_bytes(int32_t id) const {
  check_id(id);
  return bytes_[size_t(id)];
}

bool VocabTokenizer::is_special(int32_t id) const {
  check_id(id);
  return special_[size_t(id)] != 0;
}

int32_t VocabTokenizer::find_token(std::string_view text) const {
  for (const AddedToken& t : added_.tokens())
    if (t.content == text) return t.id;
  for (size_t i = 0; i < pieces_.size(); ++i)
    if (pieces_[i] == text) return int32_t(i);
  return -1;
}

}  // namespace lora
