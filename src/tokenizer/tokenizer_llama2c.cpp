// llama2.c tokenizer.bin: u32 max_token_length, then per token f32 score, i32 length, bytes; the
// number of tokens is whatever fills the file. Pieces hold real spaces (export.py replaced "▁"),
// BOS/EOS are spelled "\n<s>\n" / "\n</s>\n", byte tokens "<0xXX>" sit at ids 3..258.
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/loaders.h"
#include "tokenizer/spm_bpe.h"

namespace lora {

namespace {

constexpr uint32_t kMaxTokenLength = 1 << 16;

bool is_byte_piece(std::string_view p) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return p.size() == 6 && p.substr(0, 3) == "<0x" && hex(p[3]) && hex(p[4]) && p[5] == '>';
}

// llama2.c's export wraps BOS/EOS in newlines so that printing them shows a line break.
std::string unwrap_control(std::string_view p) {
  if (p.size() >= 3 && p.front() == '\n' && p.back() == '\n') return std::string(p.substr(1, p.size() - 2));
  return std::string(p);
}

}  // namespace

bool looks_like_llama2c_tokenizer(std::string_view bytes) {
  if (bytes.size() < 4 + 8) return false;
  uint32_t max_len;
  std::memcpy(&max_len, bytes.data(), 4);
  if (max_len == 0 || max_len > kMaxTokenLength) return false;
  size_t pos = 4;
  for (int i = 0; i < 3 && pos < bytes.size(); ++i) {  // the first records must parse
    if (bytes.size() - pos < 8) return false;
    float score;
    int32_t len;
    std::memcpy(&score, bytes.data() + pos, 4);
    std::memcpy(&len, bytes.data() + pos + 4, 4);
    if (!std::isfinite(score) || len < 0 || uint32_t(len) > max_len || size_t(len) > bytes.size() - pos - 8) return false;
    pos += 8 + size_t(len);
  }
  return true;
}

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, std::string_view bytes) {
  ByteReader r(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
  const uint32_t max_len = r.read<uint32_t>();
  if (max_len == 0 || max_len > kMaxTokenLength)
    fail_format(path, "not a llama2.c tokenizer: max_token_length = {}", max_len);
  SpmVocab v;
  v.space = " ";
  v.add_dummy_prefix = true;
  while (r.remaining() > 0) {
    const size_t id = v.pieces.size();
    if (r.remaining() < 8)
      fail_format(path, "truncated: token {} needs a score and a length at offset {}, only {} bytes left", id, r.pos(), r.remaining());
    const float score = r.read<float>();
    const int32_t len = r.read<int32_t>();
    if (!std::isfinite(score)) fail_format(path, "token {} has a non-finite score", id);
    if (len < 0 || uint32_t(len) > max_len)
      fail_format(path, "token {} has length {}, outside 0..max_token_length {}", id, len, max_len);
    if (size_t(len) > r.remaining())
      fail_format(path, "truncated: token {} needs {} bytes at offset {}, only {} left", id, len, r.pos(), r.remaining());
    std::string piece = r.read_string(size_t(len));
    TokenType type = TokenType::Normal;
    if (id == 0 && piece == "<unk>") type = TokenType::Unknown;
    else if ((id == 1 || id == 2) && (piece.find("<s>") != std::string::npos || piece.find("</s>") != std::string::npos))
      type = TokenType::Control, piece = unwrap_control(piece);
    else if (is_byte_piece(piece)) type = TokenType::Byte;
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(score);
    v.types.push_back(type);
  }
  if (v.pieces.size() < 3) fail_format(path, "a llama2.c tokenizer needs at least <unk>, <s>, </s>; found {} tokens", v.pieces.size());
  try {
    auto tok = std::make_unique<SpmBpeTokenizer>(std::move(v), "llama2c");
    tok->set_special_ids(1, 2, -1);  // run.c's convention
    tok->set_add_special(true, false);
    return tok;
  } catch (const FormatError&) {
    throw;
  } catch (const Error& e) {
    fail_format(path, "{}", e.what());
  }
}

}  // namespace lora
