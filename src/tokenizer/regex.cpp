#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace lora {

namespace {

// One match-data block and JIT stack per thread, reused across calls: encode() is const and may run
// on several threads, and allocating these per call costs more than matching a short text.
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(4, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  MatchScratch() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~MatchScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
};

MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

Regex::Regex(std::string_view pattern, bool literal) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  // PCRE2_LITERAL refuses UCP (it has no classes to apply it to).
  const uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(), options, &err,
                                   &err_offset, nullptr);
  if (!code) fail("regex '{}' does not compile at offset {}: {}", pattern_, err_offset, pcre2_message(err));
  code_ = code;
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

bool Regex::next_match(std::string_view subject, size_t start, size_t& begin, size_t& end) const {
  MatchScratch& s = scratch();
  auto* code = static_cast<pcre2_code*>(code_);
  const auto* subj = reinterpret_cast<PCRE2_SPTR>(subject.data());
  while (start <= subject.size()) {
    const int rc = jit_ ? pcre2_jit_match(code, subj, subject.size(), start, 0, s.data, s.context)
                        : pcre2_match(code, subj, subject.size(), start, 0, s.data, s.context);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) fail("regex '{}' failed on the text: {}", pattern_, pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.data);
    if (ov[1] > ov[0]) {
      begin = ov[0], end = ov[1];
      return true;
    }
    // An empty match: step over one character and look again.
    if (ov[0] >= subject.size()) return false;
    start = ov[0] + utf8::char_length(subject, ov[0]);
  }
  return false;
}

}  // namespace lora
