#include "tokenizer/added_tokens.h"

#include <algorithm>

namespace lora {

namespace {
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_word_byte(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return u >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
}  // namespace

void AddedTokenMatcher::add(AddedToken token) {
  if (token.content.empty()) return;
  // A later token with the same content replaces the earlier one (same content, one id).
  for (AddedToken& t : tokens_)
    if (t.content == token.content) {
      t = std::move(token);
      rebuild();
      return;
    }
  tokens_.push_back(std::move(token));
  rebuild();
}

void AddedTokenMatcher::rebuild() {
  index_ = StringIdMap();
  lengths_.clear();
  first_byte_.fill(false);
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const std::string& c = tokens_[i].content;
    index_.insert(c, int32_t(i));
    lengths_.push_back(c.size());
    first_byte_[static_cast<unsigned char>(c[0])] = true;
  }
  std::sort(lengths_.begin(), lengths_.end(), std::greater<>());
  lengths_.erase(std::unique(lengths_.begin(), lengths_.end()), lengths_.end());
}

std::vector<AddedTokenMatcher::Segment> AddedTokenMatcher::split(std::string_view text, bool parse_special) const {
  std::vector<Segment> out;
  size_t text_start = 0;  // start of the pending plain-text piece
  auto flush_text = [&](size_t end) {
    if (end > text_start) out.push_back({text.substr(text_start, end - text_start), -1, text_start});
  };
  for (size_t i = 0; i < text.size();) {
    const AddedToken* hit = nullptr;
    if (first_byte_[static_cast<unsigned char>(text[i])]) {
      for (size_t len : lengths_) {
        if (len > text.size() - i) continue;
        const int32_t k = index_.find(text.substr(i, len));
        if (k < 0) continue;
        const AddedToken& t = tokens_[size_t(k)];
        if (t.special && !parse_special) continue;
        if (t.single_word && ((i > 0 && is_word_byte(text[i - 1])) ||
                              (i + len < text.size() && is_word_byte(text[i + len]))))
          continue;
        hit = &t;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t begin = i, end = i + hit->content.size();
    if (hit->lstrip)
      while (begin > text_start && is_space(text[begin - 1])) --begin;
    if (hit->rstrip)
      while (end < text.size() && is_space(text[end])) ++end;
    flush_text(begin);
    out.push_back({{}, hit->id, begin});
    text_start = i = end;
  }
  flush_text(text.size());
  return out;
}

}  // namespace lora
