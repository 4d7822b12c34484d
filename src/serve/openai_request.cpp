#include "serve/openai_request.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "serve/api_error.h"

namespace lora::serve {

using nlohmann::json;

namespace {

json parse_object(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number past a double (1e309)
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return j;
}

[[noreturn]] void wrong_type(const std::string& field, const char* expected) {
  throw ApiError(400, "'" + field + "' must be " + expected, field);
}

// The field's value, or nullptr when it is absent or null (OpenAI treats null as "not given").
const json* field(const json& j, const char* name) {
  const auto it = j.find(name);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::string required_string(const json& j, const char* name) {
  const json* v = field(j, name);
  if (!v) throw ApiError(400, std::string("'") + name + "' is required", name);
  if (!v->is_string()) wrong_type(name, "a string");
  return v->get<std::string>();
}

std::optional<double> number(const json& j, const char* name, double lo, double hi) {
  const json* v = field(j, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) wrong_type(name, "a number");
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    throw ApiError(400, std::string("'") + name + "' must be between " + json(lo).dump() + " and " + json(hi).dump(), name);
  return x;
}

std::optional<int64_t> integer(const json& j, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(j, name);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) wrong_type(name, "an integer");
  const int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX) ? hi + 1 : v->get<int64_t>();
  if (x < lo || x > hi)
    throw ApiError(400, std::string("'") + name + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi), name);
  return x;
}

std::optional<bool> boolean(const json& j, const char* name) {
  const json* v = field(j, name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(name, "a boolean");
  return v->get<bool>();
}

// The fields chat and completion requests share.
CompletionRequest parse_common(const json& j) {
  CompletionRequest r;
  r.model = required_string(j, "model");
  if (auto n = integer(j, "n", 1, 1 << 20); n && *n != 1) throw ApiError(400, "only n = 1 is supported", "n");
  r.max_tokens = integer(j, "max_tokens", 1, INT32_MAX);
  if (auto m = integer(j, "max_completion_tokens", 1, INT32_MAX)) r.max_tokens = m;
  if (auto t = number(j, "temperature", 0, 2)) r.temperature = float(*t);
  if (auto p = number(j, "top_p", 0, 1)) {
    if (*p == 0) throw ApiError(400, "'top_p' must be greater than 0", "top_p");
    r.top_p = float(*p);
  }
  if (auto k = integer(j, "top_k", -1, INT32_MAX)) r.top_k = int(std::max<int64_t>(*k, 0));
  if (const json* s = field(j, "seed")) {
    if (!s->is_number_integer()) wrong_type("seed", "an integer");
    r.seed = s->is_number_unsigned() ? s->get<uint64_t>() : uint64_t(s->get<int64_t>());
  }
  if (const json* s = field(j, "stop")) {
    if (s->is_string()) {
      r.stop.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      if (s->size() > 4) throw ApiError(400, "'stop' holds at most 4 sequences", "stop");
      for (const json& e : *s) {
        if (!e.is_string()) wrong_type("stop", "a string or an array of strings");
        r.stop.push_back(e.get<std::string>());
      }
    } else {
      wrong_type("stop", "a string or an array of strings");
    }
  }
  for (const char* penalty : {"frequency_penalty", "presence_penalty"})  // refused rather than silently ignored
    if (auto p = number(j, penalty, -2, 2); p && *p != 0)
      throw ApiError(400, std::string("'") + penalty + "' is not supported (only 0)", penalty);
  r.stream = boolean(j, "stream").value_or(false);
  r.ignore_eos = boolean(j, "ignore_eos").value_or(false);
  if (const json* o = field(j, "stream_options")) {
    if (!o->is_object()) wrong_type("stream_options", "an object");
    r.include_usage = boolean(*o, "include_usage").value_or(false);
  }
  return r;
}

// A message's content: a string, or an array of {"type": "text", "text"} parts.
std::string message_content(const json& m, size_t index) {
  const std::string param = "messages[" + std::to_string(index) + "].content";
  const json* c = field(m, "content");
  if (!c) return "";
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) wrong_type(param, "a string or an array of text parts");
  std::string text;
  for (const json& part : *c) {
    const auto is_string = [&](const char* key) { return part.contains(key) && part[key].is_string(); };
    if (!part.is_object() || !is_string("type") || part["type"] != "text" || !is_string("text"))
      throw ApiError(400, param + ": only text parts ({\"type\": \"text\", \"text\": ...}) are supported", param);
    text += part["text"].get<std::string>();
  }
  return text;
}

}  // namespace

CompletionRequest parse_chat_request(const std::string& body) {
  const json j = parse_object(body);
  CompletionRequest r = parse_common(j);
  r.chat = true;
  const json* messages = field(j, "messages");
  if (!messages) throw ApiError(400, "'messages' is required", "messages");
  if (!messages->is_array() || messages->empty()) wrong_type("messages", "a non-empty array");
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    if (!m.is_object()) wrong_type("messages[" + std::to_string(i) + "]", "an object");
    const json* role = field(m, "role");
    if (!role || !role->is_string()) wrong_type("messages[" + std::to_string(i) + "].role", "a string");
    const std::string who = role->get<std::string>(), content = message_content(m, i);
    if (who == "system" || who == "developer") {
      r.system += (r.system.empty() ? "" : "\n") + content;
    } else if (who == "user" || who == "assistant") {
      r.messages.push_back({who, content});
    } else {
      throw ApiError(400, "messages[" + std::to_string(i) + "].role: '" + who +
                              "' is not one of system, developer, user, assistant", "messages");
    }
  }
  if (r.messages.empty() || r.messages.back().role != "user")
    throw ApiError(400, "the last message must be the user's", "messages");
  if (const bool lp = boolean(j, "logprobs").value_or(false); lp)
    r.logprobs = int(integer(j, "top_logprobs", 0, 20).value_or(0));
  else if (field(j, "top_logprobs"))
    throw ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs");
  return r;
}

CompletionRequest parse_completion_request(const std::string& body) {
  const json j = parse_object(body);
  CompletionRequest r = parse_common(j);
  const json* p = field(j, "prompt");
  if (!p) throw ApiError(400, "'prompt' is required", "prompt");
  if (p->is_string()) {
    r.prompt = p->get<std::string>();
  } else if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
    r.prompt = (*p)[0].get<std::string>();
  } else {
    wrong_type("prompt", "a string (one prompt per request)");
  }
  if (auto n = integer(j, "logprobs", 0, 20)) r.logprobs = int(*n);
  if (!r.max_tokens) r.max_tokens = 16;  // OpenAI's default for completions
  if (auto echo = boolean(j, "echo"); echo && *echo) throw ApiError(400, "'echo' is not supported", "echo");
  return r;
}

AdapterRequest parse_load_adapter_request(const std::string& body) {
  const json j = parse_object(body);
  AdapterRequest r{required_string(j, "lora_name"), required_string(j, "lora_path")};
  if (r.name.empty()) throw ApiError(400, "'lora_name' must not be empty", "lora_name");
  return r;
}

AdapterRequest parse_unload_adapter_request(const std::string& body) {
  const json j = parse_object(body);
  return {required_string(j, "lora_name"), ""};
}

}  // namespace lora::serve
