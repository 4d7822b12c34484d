#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace lora::byte_level {

namespace {

struct Alphabet {
  std::array<std::string, 256> char_of_byte;
  std::array<int16_t, 512> byte_of_cp;  // the mapped code points are all below U+0200

  Alphabet() {
    byte_of_cp.fill(-1);
    // GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the others are
    // shifted to U+0100 and up in byte order.
    int shifted = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + shifted++);
      char_of_byte[b] = utf8::encode(cp);
      byte_of_cp[cp] = int16_t(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet a;
  return a;
}

}  // namespace

const std::string& char_for_byte(uint8_t byte) { return alphabet().char_of_byte[byte]; }

std::string encode(std::string_view bytes) {
  const Alphabet& a = alphabet();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += a.char_of_byte[c];
  return out;
}

bool decode(std::string_view text, std::string& out) {
  const Alphabet& a = alphabet();
  bool ok = true;
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8::char_length(text, i);
    const uint32_t cp = utf8::valid_sequence_length(text, i) ? utf8::decode(text.data() + i, n) : 0xFFFFFFFF;
    if (cp < a.byte_of_cp.size() && a.byte_of_cp[cp] >= 0) {
      out += char(a.byte_of_cp[cp]);
    } else {
      out.append(text.substr(i, n));
      ok = false;
    }
    i += n;
  }
  return ok;
}

}  // namespace lora::byte_level
