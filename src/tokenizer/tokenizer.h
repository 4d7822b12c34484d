#pragma once
// The tokenizer interface every model-facing component uses. Implementations (one concern per file):
// llama2.c tokenizer.bin, SentencePiece tokenizer.model, Hugging Face tokenizer.json (byte-level and
// SentencePiece-style BPE), and vocabularies embedded in GGUF metadata.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lora {

class GGUFFile;
class GGUFWriter;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text to ids, without BOS/EOS. With parse_special, special/added tokens written in the text
  // ("<|im_start|>") become their single ids; without it they are tokenized as plain text.
  virtual std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const = 0;
  // Ids to text. Byte-fallback tokens are reassembled into UTF-8; special tokens are skipped when
  // skip_special is set.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const = 0;
  // The token's raw string as stored in the vocabulary ("Ġhello", "▁Hello", "<0x0A>", "<|im_start|>").
  virtual std::string token_text(int32_t id) const = 0;
  // The bytes the token contributes to decoded text (byte-level characters mapped back to bytes, "▁"
  // as a space, "<0x0A>" as the byte 0x0A), without the leading-space stripping decode() applies at
  // the start of a sequence. What `lora tokenize` shows per token. May be part of a UTF-8 character.
  virtual std::string token_bytes(int32_t id) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // "llama2c", "sentencepiece", "hf-bpe", "hf-spm-bpe", "gguf-llama", "gguf-gpt2" ...
  virtual std::string kind() const = 0;

  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t pad_id() const { return pad_id_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  const std::string& chat_template() const { return chat_template_; }
  // The chat template text (Jinja) recorded with the tokenizer, as tokenizer_config.json holds it.
  void set_chat_template(std::string t) { chat_template_ = std::move(t); }

  // encode() plus BOS/EOS as the tokenizer's configuration asks (add_bos / add_eos).
  std::vector<int32_t> encode_for_model(std::string_view text) const;

 protected:
  int32_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;
  bool add_bos_ = true, add_eos_ = false;
  std::string chat_template_;
};

// Streaming detokenizer: feed ids one at a time, get back only complete UTF-8 text (never half a
// character), so generated text can be printed as it is produced. Special tokens (BOS, <|im_end|>)
// are control tokens, not text, and are left out unless asked for, as llama.cpp and HF's
// decode(skip_special_tokens=True) do for what the user reads.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true) : tok_(tok), skip_special_(skip_special) {}
  std::string feed(int32_t id);
  std::string flush();  // whatever is left (invalid trailing bytes as U+FFFD)

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  size_t emitted_ = 0;  // bytes of decode(ids_) already returned
};

// From a file or folder: tokenizer.json (+ tokenizer_config.json beside it), tokenizer.model,
// llama2.c tokenizer.bin, a .gguf file, or a folder holding one of them. Throws FormatError naming
// the file on anything malformed.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);
std::unique_ptr<Tokenizer> load_tokenizer_from_gguf(const GGUFFile& gguf);

// Adds the tokenizer to a GGUF file's metadata (tokenizer.ggml.*) the way llama.cpp's converters write
// it: a SentencePiece-style vocabulary as model "llama" (pieces with "▁" for spaces, scores, token types),
// a byte-level BPE as "gpt2" (tokens, token types, merges, the pre-tokenizer's name), with the special
// token ids, add_bos/add_eos and the chat template. load_tokenizer_from_gguf() reads it back to the same
// ids. Throws lora::Error for a tokenizer with no exact GGUF form here.
void write_gguf_tokenizer(const Tokenizer& tok, GGUFWriter& out);

// Writes tokenizer.json and tokenizer_config.json into `dir` so that load_tokenizer(dir) (and Hugging
// Face tokenizers) reproduce exactly the same ids as `tok`.
void save_hf_tokenizer(const Tokenizer& tok, const std::string& dir);

}  // namespace lora
