// What all tokenizers share: BOS/EOS handling, streaming decoding, and finding the right loader
// for a file or folder by its content.
#include "tokenizer/tokenizer.h"

#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "tokenizer/loaders.h"
#include "tokenizer/utf8.h"

namespace lora {

namespace fs = std::filesystem;

std::vector<int32_t> Tokenizer::encode_for_model(std::string_view text) const {
  std::vector<int32_t> ids;
  if (add_bos_ && bos_id_ >= 0) ids.push_back(bos_id_);
  const std::vector<int32_t> body = encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  if (add_eos_ && eos_id_ >= 0) ids.push_back(eos_id_);
  return ids;
}

// decode() of a longer id sequence extends decode() of its prefix (tokens only ever append bytes;
// the one leading space SentencePiece strips comes from the first token), so the new text is the
// tail past what was already returned, cut before an unfinished UTF-8 character.
std::string StreamDecoder::feed(int32_t id) {
  ids_.push_back(id);
  const std::string text = tok_.decode(ids_, skip_special_);
  std::string out;
  size_t i = emitted_;
  while (i < text.size()) {
    const size_t n = utf8::valid_sequence_length(text, i);
    if (n) {
      out.append(text, i, n);
      i += n;
    } else if (utf8::is_incomplete_tail(text, i)) {
      break;  // wait for the bytes that complete this character
    } else {
      out += utf8::kReplacementChar;
      ++i;
    }
  }
  emitted_ = i;
  return out;
}

std::string StreamDecoder::flush() {
  const std::string text = tok_.decode(ids_, skip_special_);
  const std::string out = emitted_ < text.size() ? utf8::replace_invalid(std::string_view(text).substr(emitted_)) : "";
  emitted_ = text.size();
  return out;
}

namespace {

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

std::string find_in_folder(const std::string& dir) {
  for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer.bin"})
    if (fs::is_regular_file(fs::path(dir) / name)) return (fs::path(dir) / name).string();
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && ((starts_with(name, "tok") && entry.path().extension() == ".bin") ||
                                    entry.path().extension() == ".gguf"))
      return entry.path().string();
  }
  fail_format(dir, "no tokenizer here (looked for tokenizer.json, tokenizer.model, tokenizer.bin, tok*.bin, *.gguf)");
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return load_tokenizer(find_in_folder(path));
  const auto file = MappedFile::open(path);
  const std::string_view bytes(reinterpret_cast<const char*>(file->data()), file->size());
  if (bytes.empty()) fail_format(path, "empty file, expected a tokenizer");
  if (starts_with(bytes, "GGUF")) return load_tokenizer_from_gguf(GGUFFile::open(path));
  // JSON starts with '{' (after optional whitespace); a SentencePiece model starts with field 1,
  // wire type 2 (byte 0x0A); a llama2.c tokenizer with a small little-endian max_token_length.
  const size_t first = bytes.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && bytes[first] == '{') return load_hf_tokenizer_json(path);
  if (path.size() >= 5 && path.substr(path.size() - 5) == ".json") return load_hf_tokenizer_json(path);
  if (looks_like_llama2c_tokenizer(bytes) && !(bytes[0] == 0x0A && path.size() >= 6 && path.substr(path.size() - 6) == ".model"))
    return load_llama2c_tokenizer(path, bytes);
  if (bytes[0] == 0x0A) return load_sentencepiece_model(path, bytes);
  if (path.size() >= 4 && path.substr(path.size() - 4) == ".bin") return load_llama2c_tokenizer(path, bytes);
  fail_format(path, "unrecognised tokenizer file (not tokenizer.json, a SentencePiece model, a llama2.c tokenizer.bin or GGUF)");
}

}  // namespace lora
