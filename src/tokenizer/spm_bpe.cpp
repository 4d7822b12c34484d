#include "tokenizer/spm_bpe.h"

#include <queue>

#include <fmt/format.h>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace lora {

namespace {

// "<0x0A>" -> 0x0A; -1 for anything else.
int parse_byte_piece(std::string_view p) {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  const int hi = hex(p[3]), lo = hex(p[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, from.size(), from) == 0) out += to, i += from.size();
    else out += s[i++];
  }
  return out;
}

}  // namespace

SpmBpeTokenizer::SpmBpeTokenizer(SpmVocab vocab, std::string kind) : vocab_(std::move(vocab)) {
  kind_ = std::move(kind);
  const size_t n = vocab_.pieces.size();
  if (vocab_.scores.size() != n || vocab_.types.size() != n)
    fail("{} vocabulary: {} pieces but {} scores and {} token types", kind_, n, vocab_.scores.size(), vocab_.types.size());
  strip_leading_space_ = vocab_.add_dummy_prefix;
  pieces_ = vocab_.pieces;
  bytes_.resize(n);
  special_.assign(n, 0);
  byte_ids_.fill(-1);
  mergeable_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& p = vocab_.pieces[i];
    const int32_t id = int32_t(i);
    switch (vocab_.types[i]) {
      case TokenType::Byte: {
        const int b = parse_byte_piece(p);
        if (b < 0) fail("{} vocabulary: token {} '{}' is a byte token but not spelled <0xXX>", kind_, i, p);
        if (byte_ids_[size_t(b)] < 0) byte_ids_[size_t(b)] = id;
        bytes_[i] = std::string(1, char(b));
        break;
      }
      case TokenType::Control:
      case TokenType::Unknown:
        bytes_[i] = p;
        special_[i] = 1;
        if (vocab_.types[i] == TokenType::Unknown && unk_id_ < 0) unk_id_ = id;
        added_.add(AddedToken{p, id, true});
        break;
      case TokenType::UserDefined:
        bytes_[i] = replace_all(p, vocab_.space, " ");
        mergeable_.insert(vocab_.pieces[i], id);
        added_.add(AddedToken{p, id, false});
        break;
      case TokenType::Unused:
        bytes_[i] = replace_all(p, vocab_.space, " ");
        break;
      default:
        bytes_[i] = replace_all(p, vocab_.space, " ");
        // The first of duplicate pieces wins, as in SentencePiece's piece map.
        if (mergeable_.find(p) < 0) mergeable_.insert(vocab_.pieces[i], id);
        break;
    }
  }
}

void SpmBpeTokenizer::encode_text(std::string_view text, bool, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string s;
  s.reserve(text.size() + 8);
  if (vocab_.add_dummy_prefix) s += vocab_.space;
  if (vocab_.space == " ") {
    s += text;
  } else {
    for (char c : text) {
      if (c == ' ') s += vocab_.space;
      else s += c;
    }
  }
  merge(s, out);
}

void SpmBpeTokenizer::merge(std::string_view text, std::vector<int32_t>& out) const {
  // Symbols are contiguous slices of `text`, so a candidate pair's string is a slice too.
  struct Symbol {
    uint32_t start, len;
    int32_t prev, next;
  };
  std::vector<Symbol> sym;
  sym.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8::char_length(text, i);
    sym.push_back({uint32_t(i), uint32_t(n), int32_t(sym.size()) - 1, int32_t(sym.size()) + 1});
    i += n;
  }
  sym.back().next = -1;

  struct Bigram {
    float score;
    int32_t left;
    uint32_t size;
    bool operator<(const Bigram& o) const { return score != o.score ? score < o.score : left > o.left; }
  };
  std::priority_queue<Bigram> agenda;
  auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const uint32_t size = sym[size_t(l)].len + sym[size_t(r)].len;
    const int32_t id = mergeable_.find(text.substr(sym[size_t(l)].start, size));
    if (id >= 0) agenda.push({vocab_.scores[size_t(id)], l, size});
  };
  for (size_t i = 1; i < sym.size(); ++i) consider(int32_t(i) - 1, int32_t(i));

  while (!agenda.empty()) {
    const Bigram b = agenda.top();
    agenda.pop();
    Symbol& left = sym[size_t(b.left)];
    if (left.len == 0 || left.next < 0) continue;
    Symbol& right = sym[size_t(left.next)];
    if (left.len + right.len != b.size) continue;  // stale: one side changed since it was queued
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) sym[size_t(right.next)].prev = b.left;
    consider(left.prev, b.left);
    consider(b.left, left.next);
  }

  bool last_was_unk = false;
  for (int32_t i = 0; i >= 0; i = sym[size_t(i)].next) {
    const std::string_view piece = text.substr(sym[size_t(i)].start, sym[size_t(i)].len);
    if (const int32_t id = mergeable_.find(piece); id >= 0) {
      out.push_back(id);
      last_was_unk = false;
      continue;
    }
    bool bytes_known = true;
    for (unsigned char c : piece) bytes_known = bytes_known && byte_ids_[c] >= 0;
    if (bytes_known) {
      for (unsigned char c : piece) out.push_back(byte_ids_[c]);
      last_was_unk = false;
    } else if (unk_id_ >= 0) {
      // SentencePiece fuses a run of unknown characters into one <unk>.
      if (!last_was_unk) out.push_back(unk_id_);
      last_was_unk = true;
    }
  }
}

}  // namespace lora
