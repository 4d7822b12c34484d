// lora serve's wire format without a server: request parsing (every bad input an ApiError with its status
// and the field it names), the response shapes the openai client reads, and stop strings in a stream.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data/stop_text.h"
#include "serve/api_error.h"
#include "serve/openai_request.h"
#include "serve/openai_response.h"

namespace lora {
namespace {

using nlohmann::json;
using serve::ApiError;

// The status and param of the ApiError that parsing `body` throws (0 and "" when it parses).
std::pair<int, std::string> rejection(const std::string& body, bool chat) {
  try {
    chat ? serve::parse_chat_request(body) : serve::parse_completion_request(body);
  } catch (const ApiError& e) {
    EXPECT_FALSE(std::string(e.what()).empty());
    const json j = e.to_json();
    EXPECT_EQ(j["error"]["message"], e.what());
    EXPECT_EQ(j["error"]["type"], "invalid_request_error");
    return {e.status, e.param};
  }
  return {0, ""};
}

TEST(ServeBadInput, MalformedBodiesAndWrongTypesAre400NamingTheField) {
  const std::string msgs = R"("messages": [{"role": "user", "content": "hi"}])";
  const std::vector<std::tuple<std::string, bool, std::string>> cases = {
      {"", true, ""},
      {"{", true, ""},
      {"[1, 2]", true, ""},
      {"\"text\"", false, ""},
      {"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}", true, ""},
      {R"({"messages": [{"role": "user", "content": "hi"}]})", true, "model"},
      {R"({"model": 7, )" + msgs + "}", true, "model"},
      {R"({"model": "m"})", true, "messages"},
      {R"({"model": "m", "messages": "hi"})", true, "messages"},
      {R"({"model": "m", "messages": []})", true, "messages"},
      {R"({"model": "m", "messages": [{"role": "robot", "content": "hi"}]})", true, "messages"},
      {R"({"model": "m", "messages": [{"content": "hi"}]})", true, "messages[0].role"},
      {R"({"model": "m", "messages": [{"role": "user", "content": 5}]})", true, "messages[0].content"},
      {R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", true, "messages[0].content"},
      {R"({"model": "m", "messages": [{"role": "assistant", "content": "hi"}]})", true, "messages"},
      {R"({"model": "m", )" + msgs + R"(, "temperature": "hot"})", true, "temperature"},
      {R"({"model": "m", )" + msgs + R"(, "temperature": 3})", true, "temperature"},
      {R"({"model": "m", )" + msgs + R"(, "top_p": 0})", true, "top_p"},
      {R"({"model": "m", )" + msgs + R"(, "max_tokens": 0})", true, "max_tokens"},
      {R"({"model": "m", )" + msgs + R"(, "max_tokens": 1.5})", true, "max_tokens"},
      {R"({"model": "m", )" + msgs + R"(, "max_tokens": 99999999999999999999})", true, "max_tokens"},
      {R"({"model": "m", )" + msgs + R"(, "n": 2})", true, "n"},
      {R"({"model": "m", )" + msgs + R"(, "stop": 3})", true, "stop"},
      {R"({"model": "m", )" + msgs + R"(, "stop": ["a", "b", "c", "d", "e"]})", true, "stop"},
      {R"({"model": "m", )" + msgs + R"(, "stream": "yes"})", true, "stream"},
      {R"({"model": "m", )" + msgs + R"(, "stream_options": true})", true, "stream_options"},
      {R"({"model": "m", )" + msgs + R"(, "seed": "x"})", true, "seed"},
      {R"({"model": "m", )" + msgs + R"(, "top_logprobs": 2})", true, "top_logprobs"},
      {R"({"model": "m", )" + msgs + R"(, "logprobs": true, "top_logprobs": 21})", true, "top_logprobs"},
      {R"({"model": "m", )" + msgs + R"(, "frequency_penalty": 0.5})", true, "frequency_penalty"},
      {R"({"model": "m"})", false, "prompt"},
      {R"({"model": "m", "prompt": ["a", "b"]})", false, "prompt"},
      {R"({"model": "m", "prompt": [1, 2, 3]})", false, "prompt"},
      {R"({"model": "m", "prompt": "a", "logprobs": true})", false, "logprobs"},
      {R"({"model": "m", "prompt": "a", "echo": true})", false, "echo"},
  };
  for (const auto& [body, chat, param] : cases) {
    const auto [status, got] = rejection(body, chat);
    EXPECT_EQ(status, 400) << body;
    EXPECT_EQ(got, param) << body;
  }
  EXPECT_EQ(rejection(R"({"model": "m", "prompt": "hi"})", false).first, 0);
}

TEST(ServeRequest, FieldsAndDefaultsAsOpenAiDefinesThem) {
  const serve::CompletionRequest chat = serve::parse_chat_request(R"({
      "model": "zuzu", "messages": [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
                                     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Who are you?"}],
      "temperature": 0, "top_p": 0.5, "seed": 42, "stop": "\n\n", "stream": true,
      "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 3, "max_completion_tokens": 12,
      "frequency_penalty": null, "presence_penalty": 0, "user": "someone"})");
  EXPECT_TRUE(chat.chat);
  EXPECT_EQ(chat.model, "zuzu");
  EXPECT_EQ(chat.system, "Be brief.");
  ASSERT_EQ(chat.messages.size(), 3u);
  EXPECT_EQ(chat.messages[0].content, "Hi there");
  EXPECT_EQ(chat.messages[2].role, "user");
  EXPECT_EQ(chat.temperature, 0.0f);
  EXPECT_EQ(chat.top_p, 0.5f);
  EXPECT_EQ(chat.seed, 42u);
  EXPECT_EQ(chat.stop, std::vector<std::string>{"\n\n"});
  EXPECT_TRUE(chat.stream && chat.include_usage);
  EXPECT_EQ(chat.logprobs, 3);
  EXPECT_EQ(chat.max_tokens, 12);

  const serve::CompletionRequest plain = serve::parse_completion_request(R"({"model": "base", "prompt": ["Once"]})");
  EXPECT_FALSE(plain.chat);
  EXPECT_EQ(plain.prompt, "Once");
  EXPECT_EQ(plain.max_tokens, 16);  // OpenAI's default for completions
  EXPECT_EQ(plain.temperature, 1.0f);
  EXPECT_EQ(plain.logprobs, -1);
  EXPECT_FALSE(plain.seed.has_value());

  EXPECT_EQ(serve::parse_load_adapter_request(R"({"lora_name": "a", "lora_path": "/x"})").path, "/x");
  EXPECT_THROW(serve::parse_load_adapter_request(R"({"lora_name": "a"})"), ApiError);
  EXPECT_THROW(serve::parse_unload_adapter_request(R"({"lora_name": 1})"), ApiError);
}

TEST(ServeRequest, ResponsesHaveTheShapesTheOpenAiClientReads) {
  const serve::ResponseHeader chat{true, "chatcmpl-1", "zuzu", 1700000000};
  serve::Completion c;
  c.text = "Hello";
  c.finish_reason = "length";
  c.prompt_tokens = 7, c.completion_tokens = 2;
  c.with_logprobs = true;
  c.logprobs.push_back({"Hel", -0.5f, {{"Hel", -0.5f}, {"Hi", -1.5f}}});
  const json r = serve::completion_json(chat, c);
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["choices"][0]["message"]["content"], "Hello");
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r["usage"]["total_tokens"], 9);
  EXPECT_EQ(r["choices"][0]["logprobs"]["content"][0]["top_logprobs"][1]["token"], "Hi");
  EXPECT_EQ(r["choices"][0]["logprobs"]["content"][0]["bytes"], json({72, 101, 108}));

  const json first = serve::chunk_json(chat, "", nullptr, "", true);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(serve::chunk_json(chat, "", nullptr, "stop")["choices"][0]["delta"], json::object());

  const serve::ResponseHeader text{false, "cmpl-2", "base", 1700000000};
  serve::Completion t = c;
  const json tr = serve::completion_json(text, t);
  EXPECT_EQ(tr["object"], "text_completion");
  EXPECT_EQ(tr["choices"][0]["text"], "Hello");
  EXPECT_EQ(tr["choices"][0]["logprobs"]["tokens"][0], "Hel");
  EXPECT_EQ(tr["choices"][0]["logprobs"]["top_logprobs"][0]["Hi"], -1.5f);
  EXPECT_EQ(serve::usage_chunk_json(text, 3, 4)["choices"], json::array());
  // half a UTF-8 character becomes U+FFFD on the wire instead of an exception
  EXPECT_NE(serve::to_wire(json{{"token", std::string("\xe2\x96")}}).find("\xef\xbf\xbd"), std::string::npos);
}

TEST(StopText, HoldsBackWhatMayStartAStopStringAndCutsBeforeIt) {
  StopText s({"\n\nUser:", "END"});
  EXPECT_EQ(s.add("Hello"), "Hello");
  EXPECT_EQ(s.add(" wor"), " wor");
  EXPECT_EQ(s.add("ld\n"), "ld");  // "\n" may start "\n\nUser:"
  EXPECT_EQ(s.add("\nUs"), "");
  EXPECT_EQ(s.add("e"), "");
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(s.add("r: more"), "");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.text(), "Hello world");
  EXPECT_EQ(s.add("later"), "");

  StopText t({"END"});
  EXPECT_EQ(t.add("THE EN"), "THE ");
  EXPECT_EQ(t.add("D"), "");
  EXPECT_TRUE(t.stopped());
  StopText u({"END"});
  EXPECT_EQ(u.add("THE EN"), "THE ");
  EXPECT_EQ(u.add("ZO"), "ENZO");
  EXPECT_EQ(u.add("E"), "");
  EXPECT_EQ(u.finish(), "E");
  EXPECT_FALSE(u.stopped());
  StopText none({});
  EXPECT_EQ(none.add("abc"), "abc");
}

}  // namespace
}  // namespace lora
