#include "serve/openai_response.h"

namespace lora::serve {

using nlohmann::json;

namespace {

json bytes_json(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

// OpenAI's two logprobs shapes: chat {"content": [{token, logprob, bytes, top_logprobs}]}, completions
// {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}.
json logprobs_json(bool chat, const TokenLogprob* const* lps, size_t n, size_t text_offset) {
  if (chat) {
    json content = json::array();
    for (size_t i = 0; i < n; ++i) {
      json top = json::array();
      for (const auto& [t, lp] : lps[i]->top) top.push_back({{"token", t}, {"logprob", lp}, {"bytes", bytes_json(t)}});
      content.push_back({{"token", lps[i]->token}, {"logprob", lps[i]->logprob}, {"bytes", bytes_json(lps[i]->token)},
                         {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
  for (size_t i = 0; i < n; ++i) {
    tokens.push_back(lps[i]->token);
    token_logprobs.push_back(lps[i]->logprob);
    json alternatives = json::object();
    for (const auto& [t, lp] : lps[i]->top) alternatives[t] = lp;
    top.push_back(alternatives);
    offsets.push_back(text_offset);
    text_offset += lps[i]->token.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
}

json envelope(const ResponseHeader& h, bool chunk) {
  return {{"id", h.id},
          {"object", h.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
          {"created", h.created},
          {"model", h.model}};
}

}  // namespace

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

json completion_json(const ResponseHeader& h, const Completion& c) {
  std::vector<const TokenLogprob*> lps;
  for (const TokenLogprob& lp : c.logprobs) lps.push_back(&lp);
  const json logprobs = c.with_logprobs ? logprobs_json(h.chat, lps.data(), lps.size(), 0) : json(nullptr);
  json choice = {{"index", 0}, {"logprobs", logprobs}, {"finish_reason", c.finish_reason}};
  if (h.chat)
    choice["message"] = {{"role", "assistant"}, {"content", c.text}};
  else
    choice["text"] = c.text;
  json j = envelope(h, false);
  j["choices"] = json::array({choice});
  j["usage"] = usage_json(c.prompt_tokens, c.completion_tokens);
  return j;
}

json chunk_json(const ResponseHeader& h, const std::string& text, const TokenLogprob* logprob,
                const std::string& finish_reason, bool role) {
  json choice = {{"index", 0},
                 {"logprobs", logprob ? logprobs_json(h.chat, &logprob, 1, 0) : json(nullptr)},
                 {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  if (h.chat) {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    if (role || !text.empty()) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  json j = envelope(h, true);
  j["choices"] = json::array({choice});
  return j;
}

json usage_chunk_json(const ResponseHeader& h, int64_t prompt_tokens, int64_t completion_tokens) {
  json j = envelope(h, true);
  j["choices"] = json::array();
  j["usage"] = usage_json(prompt_tokens, completion_tokens);
  return j;
}

json models_json(const std::vector<std::shared_ptr<const ServedModel>>& models, int64_t max_model_len) {
  json data = json::array();
  for (const auto& m : models)
    data.push_back({{"id", m->name},
                    {"object", "model"},
                    {"created", m->created},
                    {"owned_by", "lora.cpp"},
                    {"root", m->path},
                    {"parent", m->parent.empty() ? json(nullptr) : json(m->parent)},
                    {"max_model_len", max_model_len}});
  return {{"object", "list"}, {"data", data}};
}

std::string to_wire(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace lora::serve
