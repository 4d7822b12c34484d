#pragma once
// GPT-2's byte-level alphabet: every byte 0..255 is shown as one printable Unicode character (space
// is "Ġ", newline "Ċ"), so a byte-level vocabulary is plain text. The tokenizers here run BPE on the
// raw bytes instead and convert only when reading or writing vocabulary strings.
#include <cstdint>
#include <string>
#include <string_view>

namespace lora::byte_level {

// The UTF-8 encoding of the character that stands for `byte`.
const std::string& char_for_byte(uint8_t byte);

// Raw bytes -> byte-level text ("hello world" -> "helloĠworld").
std::string encode(std::string_view bytes);

// Byte-level text -> raw bytes. Returns false when a character is not in the alphabet; such
// characters are copied to `out` as they are (what Hugging Face's ByteLevel decoder does).
bool decode(std::string_view text, std::string& out);

}  // namespace lora::byte_level
