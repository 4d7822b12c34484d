#pragma once
// The request bodies of OpenAI's API that `lora serve` answers, parsed and checked: a wrong type or an
// out-of-range value is an ApiError 400 naming the field (param), as OpenAI's API and vLLM answer.
//
//   POST /v1/chat/completions   {"model", "messages": [{"role", "content"}], "max_tokens" | "max_completion_tokens",
//                                "temperature", "top_p", "top_k", "seed", "stop", "n": 1, "stream",
//                                "stream_options": {"include_usage"}, "logprobs": bool, "top_logprobs",
//                                "ignore_eos" (vLLM)}
//   POST /v1/completions        {"model", "prompt": string, "max_tokens", ..., "logprobs": int}
//   POST /v1/load_lora_adapter  {"lora_name", "lora_path"}       POST /v1/unload_lora_adapter {"lora_name"}
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/sample.h"

namespace lora::serve {

struct CompletionRequest {
  bool chat = false;
  std::string model;
  std::string system;                 // chat: the system messages, joined
  std::vector<ChatMessage> messages;  // chat: user / assistant turns, ending with the user's
  std::string prompt;                 // completion

  // none: as many as the context and the server's cap allow (chat); completions default to 16, as OpenAI's
  std::optional<int64_t> max_tokens;
  float temperature = 1.0f;           // OpenAI's defaults: plain sampling
  float top_p = 1.0f;
  int top_k = 0;                      // vLLM's extension; 0: no limit
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the token counts
  int logprobs = -1;           // -1: none; otherwise how many alternatives per token besides the chosen one
  bool ignore_eos = false;     // vLLM's extension: generate max_tokens whatever the model says
};

CompletionRequest parse_chat_request(const std::string& body);
CompletionRequest parse_completion_request(const std::string& body);

struct AdapterRequest {
  std::string name, path;  // path: load only
};
AdapterRequest parse_load_adapter_request(const std::string& body);
AdapterRequest parse_unload_adapter_request(const std::string& body);

}  // namespace lora::serve
