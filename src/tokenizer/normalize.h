#pragma once
// Hugging Face normalizers the Llama-family tokenizers use: Prepend + Replace (SentencePiece-style
// Llama 2 / Mistral exports: " " -> "▁" and a leading "▁"), NFC (Qwen), Strip, Sequence.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/regex.h"

namespace lora {

class Normalizer {
 public:
  // From the "normalizer" object of tokenizer.json (null: none). Throws FormatError naming `path`
  // for normalizers it does not implement, rather than tokenizing differently from the original.
  static Normalizer from_hf_json(const nlohmann::json& j, const std::string& path);

  bool empty() const { return steps_.empty(); }
  std::string apply(std::string_view text) const;

 private:
  struct Step {
    enum class Kind { Prepend, Replace, Nfc, Strip } kind = Kind::Prepend;
    std::string text;                     // Prepend: what; Replace: the content put in
    std::shared_ptr<const Regex> regex;   // Replace: the pattern
    bool left = false, right = false;     // Strip
  };
  void add_step(const nlohmann::json& j, const std::string& path);
  std::vector<Step> steps_;
};

// Unicode canonical composition (NFC), tables from the Unicode Character Database.
std::string nfc(std::string_view text);

}  // namespace lora
