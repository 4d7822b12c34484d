#pragma once
// Hugging Face pre-tokenizers: how normalized text is cut into the words BPE works on (Split by the
// family's regex, ByteLevel, Digits, Metaspace, Sequence). Words are ranges of one string, so the
// common path (one regex split of the whole text) copies nothing.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/regex.h"

namespace lora {

// Split patterns of the families (as in their tokenizer.json and llama.cpp's llama-vocab.cpp).
namespace split_pattern {
// GPT-2's pattern, also what ByteLevel(use_regex=true) uses.
inline constexpr const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Llama 3: case-insensitive contractions, digits in groups of at most three.
inline constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2/2.5/3: as Llama 3 but every digit alone.
inline constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}  // namespace split_pattern

class PreTokenizer {
 public:
  using Range = std::pair<uint32_t, uint32_t>;  // [begin, end) in the rewritten string

  // From the "pre_tokenizer" object of tokenizer.json (null: no pre-tokenization). Throws
  // FormatError naming `path` for types it does not know.
  static PreTokenizer from_hf_json(const nlohmann::json& j, const std::string& path);

  bool empty() const { return steps_.empty(); }
  // A ByteLevel step is present: the model works on raw bytes.
  bool byte_level() const { return byte_level_; }

  // Rewrites `text` where a step asks for it (Metaspace, ByteLevel's prefix space) and fills `words`
  // with ranges of it. `at_text_start`: this piece begins the whole input (Metaspace "first").
  void run(std::string& text, bool at_text_start, std::vector<Range>& words) const;

 private:
  enum class Behavior { Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous };
  enum class Prepend { Always, First, Never };
  struct Step {
    enum class Kind { Split, PrefixSpace, Metaspace } kind = Kind::Split;
    std::shared_ptr<const Regex> regex;
    Behavior behavior = Behavior::Isolated;
    std::string replacement;  // Metaspace
    Prepend prepend = Prepend::Always;
    bool metaspace_split = true;
  };
  void add_step(const nlohmann::json& j, const std::string& path);
  static void split(const std::string& text, const Regex& regex, Behavior behavior, std::vector<Range>& ranges);
  void metaspace(const Step& step, std::string& text, bool at_text_start, std::vector<Range>& ranges) const;
  static void prefix_space(std::string& text, std::vector<Range>& ranges);

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

}  // namespace lora
