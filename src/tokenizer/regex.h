#pragma once
// The split patterns of the byte-level BPE families (\p{L}, \p{N}, lookahead) through PCRE2 in UTF +
// UCP mode, JIT-compiled: Hugging Face runs them with Oniguruma, whose Unicode classes agree.
// Invalid UTF-8 in the subject is allowed (PCRE2_MATCH_INVALID_UTF): such bytes just never match.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace lora {

class Regex {
 public:
  // Throws lora::Error naming the pattern when it does not compile.
  explicit Regex(std::string_view pattern, bool literal = false);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  const std::string& pattern() const { return pattern_; }

  // Calls on_match(begin, end) for each non-overlapping, non-empty match in `subject`, left to right.
  template <typename F> void for_each_match(std::string_view subject, F&& on_match) const {
    size_t start = 0;
    size_t begin, end;
    while (next_match(subject, start, begin, end)) {
      on_match(begin, end);
      start = end;
    }
  }

 private:
  // Finds the first non-empty match at or after `start`.
  bool next_match(std::string_view subject, size_t start, size_t& begin, size_t& end) const;
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8, kept out of the header
  bool jit_ = false;
};

}  // namespace lora
