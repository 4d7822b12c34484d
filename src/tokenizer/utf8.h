#pragma once
// UTF-8 helpers the tokenizers share. Input text may hold invalid UTF-8 (a dataset line cut in the
// middle of a character); every helper treats a malformed byte as a one-byte unit of its own, so
// nothing reads past the end and no byte is lost.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lora::utf8 {

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 when the bytes there are not one
// (bad lead byte, bad continuation, overlong form, surrogate, beyond U+10FFFF, cut off by the end).
inline size_t valid_sequence_length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const size_t left = s.size() - i;
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte (excludes overlongs, surrogates)
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) { n = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
  else if (c >= 0xF0 && c <= 0xF4) { n = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
  else return 0;
  if (left < n) return 0;
  if (b(1) < lo || b(1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if ((b(k) & 0xC0) != 0x80) return 0;
  return n;
}

// Length of the unit at s[i] for splitting text into "characters": a whole valid sequence, else 1.
inline size_t char_length(std::string_view s, size_t i) {
  const size_t n = valid_sequence_length(s, i);
  return n ? n : 1;
}

// True when s[i..] is the beginning of a valid multi-byte sequence that the end of s cuts off, i.e.
// more bytes could still complete it (what a stream decoder must hold back).
inline bool is_incomplete_tail(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) n = 3;
  else if (c >= 0xF0 && c <= 0xF4) n = 4;
  else return false;
  const size_t left = s.size() - i;
  if (left >= n) return false;
  // Every byte present must be one a valid sequence could have there.
  for (size_t k = 1; k < left; ++k) {
    const unsigned char d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xC0) != 0x80) return false;
    if (k == 1) {
      if (c == 0xE0 && d < 0xA0) return false;
      if (c == 0xED && d > 0x9F) return false;
      if (c == 0xF0 && d < 0x90) return false;
      if (c == 0xF4 && d > 0x8F) return false;
    }
  }
  return true;
}

// Decodes the code point of a valid sequence of length n at p (n from valid_sequence_length).
inline uint32_t decode(const char* p, size_t n) {
  const auto u = [&](size_t k) { return uint32_t(static_cast<unsigned char>(p[k])); };
  switch (n) {
    case 1: return u(0);
    case 2: return ((u(0) & 0x1F) << 6) | (u(1) & 0x3F);
    case 3: return ((u(0) & 0x0F) << 12) | ((u(1) & 0x3F) << 6) | (u(2) & 0x3F);
    default: return ((u(0) & 0x07) << 18) | ((u(1) & 0x3F) << 12) | ((u(2) & 0x3F) << 6) | (u(3) & 0x3F);
  }
}

inline void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

inline std::string encode(uint32_t cp) {
  std::string s;
  append(s, cp);
  return s;
}

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// The text with every malformed byte replaced by U+FFFD (as Python's errors="replace" does).
inline std::string replace_invalid(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = valid_sequence_length(s, i);
    if (n) out.append(s.substr(i, n)), i += n;
    else out.append(kReplacementChar), ++i;
  }
  return out;
}

}  // namespace lora::utf8
