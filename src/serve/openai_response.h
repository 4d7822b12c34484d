#pragma once
// The response bodies of OpenAI's API (and vLLM's additions, e.g. "parent" on an adapter's model card):
// whole responses, server-sent-event chunks, model lists, usage counts.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/generation.h"

namespace lora::serve {

// What every response and chunk of one request repeats.
struct ResponseHeader {
  bool chat = false;
  std::string id;  // "chatcmpl-…" / "cmpl-…"
  std::string model;
  int64_t created = 0;
};

struct Completion {
  std::string text;
  std::vector<TokenLogprob> logprobs;  // one per generated token, when asked
  bool with_logprobs = false;
  std::string finish_reason;
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

nlohmann::json usage_json(int64_t prompt_tokens, int64_t completion_tokens);
// A whole chat.completion or text_completion.
nlohmann::json completion_json(const ResponseHeader& h, const Completion& c);
// A chat.completion.chunk / text_completion chunk: the role (chat's first chunk), new text, its token's
// logprob (may be null), or the finish reason (empty: none yet).
nlohmann::json chunk_json(const ResponseHeader& h, const std::string& text, const TokenLogprob* logprob,
                          const std::string& finish_reason, bool role = false);
// The last chunk when stream_options.include_usage: no choices, the counts.
nlohmann::json usage_chunk_json(const ResponseHeader& h, int64_t prompt_tokens, int64_t completion_tokens);
// GET /v1/models.
nlohmann::json models_json(const std::vector<std::shared_ptr<const ServedModel>>& models, int64_t max_model_len);

// JSON text for the wire: bytes that are not UTF-8 (a token that is half a character) become U+FFFD.
std::string to_wire(const nlohmann::json& j);

}  // namespace lora::serve
