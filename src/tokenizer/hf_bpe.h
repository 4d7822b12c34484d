#pragma once
// A Hugging Face tokenizer.json BPE pipeline: added tokens -> normalizer -> pre-tokenizer -> BPE
// model, and the decoder's view of each token. Byte-level vocabularies (Llama 3, Qwen, SmolLM, GPT-2)
// run BPE on raw bytes; SentencePiece-style ones (Llama 2 / Mistral exports) on "▁"-text with byte
// fallback. Also built from GGUF "gpt2" vocabularies, which describe the same thing.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/bpe.h"
#include "tokenizer/normalize.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/vocab_tokenizer.h"

namespace lora {

class HfBpeTokenizer : public VocabTokenizer {
 public:
  // The tokenizer.json parts kept as JSON: they are small, and the export writes them back unchanged.
  struct Pipeline {
    nlohmann::json normalizer, pre_tokenizer, post_processor, decoder;
  };
  struct ModelOptions {
    std::string unk_token;  // "" for none
    bool ignore_merges = false, byte_fallback = false, fuse_unk = false;
  };

  // `vocab`: id -> vocabulary string ("" where an id is unused). Throws FormatError naming `path`.
  HfBpeTokenizer(std::string kind, Pipeline pipeline, ModelOptions options, std::vector<std::string> vocab,
                 const std::string& path);
  // Merges in rank order, as vocabulary strings. Unknown tokens are a FormatError naming `index`.
  void add_merge(std::string_view left, std::string_view right, size_t index);
  void add_token(AddedToken token);
  // Call once everything is added: fills in the decoded bytes of every token.
  void finish();

  const Pipeline& pipeline() const { return pipeline_; }
  const ModelOptions& model_options() const { return options_; }
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }
  // Whether the id is an entry of the model's "vocab" (added tokens may or may not also be).
  bool in_model_vocab(int32_t id) const { return id >= 0 && id < n_model_tokens_ && in_model_vocab_[size_t(id)]; }

 protected:
  void encode_text(std::string_view text, bool at_text_start, std::vector<int32_t>& out) const override;

 private:
  int32_t model_id(std::string_view vocab_string) const;
  void configure_decoder(const nlohmann::json& j);

  std::string path_;
  Pipeline pipeline_;
  ModelOptions options_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  BpeModel model_;
  std::vector<std::string> model_keys_;  // the model's spelling of each token (raw bytes when byte-level)
  std::vector<std::pair<int32_t, int32_t>> merges_;
  int32_t n_model_tokens_ = 0;
  std::vector<uint8_t> in_model_vocab_;
  // How the decoder spells tokens out.
  bool decode_byte_level_ = false, decode_byte_fallback_ = false;
  std::vector<std::pair<std::string, std::string>> decode_replace_;
};

}  // namespace lora
