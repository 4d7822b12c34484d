// `lora serve` end to end: the official openai npm client against the server (tests/serve_client), its
// greedy texts against `lora generate` and `lora chat` with the same adapters; then every bad input with its
// status and JSON error, the queue limit, and SIGTERM with a stream in flight.
#include <gtest/gtest.h>

#include <httplib.h>

#include <filesystem>
#include <future>

#include <nlohmann/json.hpp>

#include "formats/model_loader.h"
#include "serve_test_util.h"

namespace lora {
namespace {

using nlohmann::json;
using test::run_cli;
using test::ServerProcess;
using test::TempDir;

const std::string kPrompt = "Once upon a time";
const std::string kMessage = "Tell me a story about a dog.";
const std::string kKey = "sk-test-4242";

std::string client_dir() { return std::string(LORA_SOURCE_DIR) + "/tests/serve_client"; }

// What `lora generate --temp 0` prints after the prompt, without the final newline.
std::string generated(const std::string& adapter_args, int n) {
  const auto r = run_cli("generate -m " + test::stories_bin() + adapter_args + " --temp 0 -n " + std::to_string(n) +
                         " -p '" + kPrompt + "'");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind(kPrompt, 0), 0u) << r.out;
  return r.out.substr(kPrompt.size(), r.out.size() - kPrompt.size() - 1);
}

// `lora chat --temp 0 -p MESSAGE`'s reply.
std::string chatted(const std::string& adapter_args, int n) {
  const auto r = run_cli("chat -m " + test::stories_bin() + adapter_args + " --temp 0 -n " + std::to_string(n) + " -p '" +
                         kMessage + "'");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out.substr(0, r.out.size() - 1);
}

TEST(ServeHttp, TheOpenAiClientGetsWhatLoraGenerateAndLoraChatPrint) {
  ASSERT_TRUE(std::filesystem::exists(client_dir() + "/node_modules/openai"))
      << "the openai npm package is missing: run `npm ci --prefix tests/serve_client` (scripts/test.sh does)";
  TempDir dir;
  const Model base = load_model(test::stories_bin());
  test::save_serve_adapters(base, dir);
  ServerProcess server({"-m", test::stories_bin(), "--adapter", "zuzu=" + (dir / "zuzu"), "--adapter", dir / "qv",
                        "--api-key", kKey, "--parallel", "4", "--ctx", "512"});
  ASSERT_GT(server.port(), 0) << server.log();

  const int n = 40;
  test::write_text(dir / "config.json", json{{"url", server.url()}, {"api_key", kKey}, {"base", "stories260K"},
                                              {"adapters", {"zuzu", "qv"}}, {"late_adapter", dir / "late"},
                                              {"prompt", kPrompt}, {"message", kMessage}, {"max_tokens", n}}
                                             .dump());
  const auto client = test::run("node " + client_dir() + "/openai_client.mjs " + (dir / "config.json"));
  ASSERT_EQ(client.exit_code, 0) << client.err << "\n" << server.log();
  const json out = json::parse(client.out);

  EXPECT_EQ(out["models"], json::parse(R"([{"id": "stories260K", "parent": null}, {"id": "zuzu", "parent": "stories260K"},
                                            {"id": "qv", "parent": "stories260K"}])"));
  const std::map<std::string, std::string> adapter_args = {
      {"stories260K", ""}, {"zuzu", " --adapter " + (dir / "zuzu")}, {"qv", " --adapter " + (dir / "qv")}};
  std::map<std::string, std::string> completion, chat;
  for (const auto& [model, args] : adapter_args) {
    completion[model] = generated(args, n);
    chat[model] = chatted(args, n);
    EXPECT_FALSE(completion[model].empty());
    EXPECT_EQ(out["completions"][model], completion[model]) << model;
    EXPECT_EQ(out["chats"][model]["content"], chat[model]) << model;
  }
  EXPECT_NE(completion["zuzu"], completion["stories260K"]);
  EXPECT_NE(completion["qv"], completion["stories260K"]);
  EXPECT_NE(chat["zuzu"], chat["stories260K"]);
  const json& usage = out["chats"]["zuzu"]["usage"];
  EXPECT_GT(usage["prompt_tokens"].get<int>(), 5);
  EXPECT_EQ(usage["total_tokens"], usage["prompt_tokens"].get<int>() + usage["completion_tokens"].get<int>());

  // streamed: the chunks add up to the same reply, with the role first and the usage last
  EXPECT_EQ(out["chat_stream"]["text"], chat["zuzu"]);
  EXPECT_EQ(out["chat_stream"]["role"], "assistant");
  EXPECT_EQ(out["chat_stream"]["finish_reason"], out["chats"]["zuzu"]["finish_reason"]);
  EXPECT_EQ(out["chat_stream"]["usage"], usage);
  EXPECT_GT(out["chat_stream"]["chunks"].get<int>(), 5);
  EXPECT_EQ(out["completion_stream"]["text"], completion["stories260K"]);

  // greedy logprobs: the chosen token is the most likely one
  ASSERT_EQ(out["logprobs"].size(), 5u);
  for (const json& t : out["logprobs"]) {
    EXPECT_LE(t["logprob"].get<double>(), 0.0);
    ASSERT_EQ(t["top"].size(), 3u);
    EXPECT_NEAR(t["top"][0].get<double>(), t["logprob"].get<double>(), 1e-6);
    EXPECT_GE(t["top"][0].get<double>(), t["top"][1].get<double>());
  }
  EXPECT_EQ(out["seeded"][0], out["seeded"][1]);

  // twelve requests at once over the three models: each gets its one-at-a-time text
  ASSERT_EQ(out["concurrent"].size(), 12u);
  for (const json& c : out["concurrent"]) EXPECT_EQ(c["text"], completion[c["model"].get<std::string>()]) << c["model"];

  // loaded at run time; unloaded while six streams ran: none lost, each with its one-at-a-time text
  EXPECT_NE(out["load_response"].get<std::string>().find("late"), std::string::npos);
  EXPECT_EQ(out["models_after_load"], json({"stories260K", "zuzu", "qv", "late"}));
  EXPECT_EQ(out["late"], generated(" --adapter " + (dir / "late"), n));
  const std::string late_chat = chatted(" --adapter " + (dir / "late"), 60), base_chat = chatted("", 60);
  ASSERT_EQ(out["during_unload"].size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_FALSE(out["during_unload"][i]["finish"].is_null()) << i;
    EXPECT_EQ(out["during_unload"][i]["text"], i % 2 ? late_chat : base_chat) << i;
  }
  EXPECT_EQ(out["models_after_unload"], json({"stories260K", "zuzu", "qv"}));
  EXPECT_EQ(out["late_after_unload"], 404);
  EXPECT_EQ(out["load_missing"], 400);
  EXPECT_EQ(out["unload_unknown"], 404);

  // the client that went away mid-stream: its request was cancelled and its slot freed
  // (the client still hands out the chunks it had received; not all 500 came)
  EXPECT_GE(out["abort"]["chunks"].get<int>(), 1);
  EXPECT_LT(out["abort"]["chunks"].get<int>(), 500);
  EXPECT_EQ(out["abort"]["running_after"], 0);
  EXPECT_EQ(out["abort"]["cancelled_after"].get<int>(), out["abort"]["cancelled_before"].get<int>() + 1);

  EXPECT_EQ(out["errors"], json({{"unknown_model", 404}, {"bad_temperature", 400}, {"too_many_tokens", 400}, {"wrong_key", 401}}));

  EXPECT_EQ(server.stop(SIGTERM), 0) << server.log();
  EXPECT_NE(server.log().find("lora serve: stopped"), std::string::npos) << server.log();
}

TEST(ServeHttp, ThePageStreamsAnAdaptersAnswerInHeadlessChromium) {
  ASSERT_TRUE(std::filesystem::exists(client_dir() + "/node_modules/playwright-core"))
      << "playwright-core is missing: run `npm ci --prefix tests/serve_client` (scripts/test.sh does)";
  ASSERT_TRUE(std::filesystem::exists("/usr/bin/chromium")) << "Debian's chromium is missing: bash scripts/setup-deps.sh";
  TempDir dir;
  const Model base = load_model(test::stories_bin());
  test::save_serve_adapters(base, dir);
  ServerProcess server({"-m", test::stories_bin(), "--adapter", "zuzu=" + (dir / "zuzu"), "--adapter", "qv=" + (dir / "qv"),
                        "--api-key", kKey, "--ctx", "512"});
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string shot = dir / "page.png";
  const auto r = test::run("node " + client_dir() + "/web_page.mjs " + server.url() + " zuzu '" + kMessage + "' " + shot +
                           " " + kKey);
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << server.log();
  const json page = json::parse(r.out);
  EXPECT_EQ(page["models"], json({"stories260K", "zuzu", "qv"}));
  // the page asked at temperature 0 for 40 tokens: what `lora chat` answers with that adapter
  const std::string expected = chatted(" --adapter " + (dir / "zuzu"), 40);
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(page["answer"], expected);
  const std::string shown = page["shown"];
  EXPECT_NE(shown.find(kMessage), std::string::npos) << shown;
  EXPECT_NE(shown.find(expected.substr(0, 20)), std::string::npos) << shown;
  EXPECT_NE(page["status"].get<std::string>().find("tokens in"), std::string::npos) << page["status"];
  const std::string png = test::read_text(shot);
  ASSERT_GT(png.size(), 10000u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
}

// Status and OpenAI error JSON of a response.
void expect_error(const httplib::Result& r, int status, const std::string& type, const std::string& what) {
  ASSERT_TRUE(r) << "no response (" << what << ")";
  EXPECT_EQ(r->status, status) << what << ": " << r->body;
  const json j = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << what << ": " << r->body;
  EXPECT_EQ(j["error"]["type"], type) << what;
  EXPECT_FALSE(j["error"]["message"].get<std::string>().empty()) << what;
}

TEST(ServeHttpBadInput, EveryBadInputGetsItsStatusAndAnOpenAiError) {
  ServerProcess server({"-m", test::stories_bin(), "--api-key", kKey, "--parallel", "1", "--max-queue", "1", "--ctx", "512",
                        "--max-body", "4096", "--max-tokens", "500", "--grace", "5"});
  ASSERT_GT(server.port(), 0) << server.log();
  httplib::Client http("127.0.0.1", server.port());
  const httplib::Headers auth = {{"Authorization", "Bearer " + kKey}};
  const auto post = [&](const std::string& path, const std::string& body) {
    return http.Post(path.c_str(), auth, body, "application/json");
  };
  const std::string chat = "/v1/chat/completions";

  expect_error(http.Get("/v1/models"), 401, "authentication_error", "no key");
  expect_error(http.Get("/v1/models", {{"Authorization", "Bearer nope"}}), 401, "authentication_error", "wrong key");
  ASSERT_TRUE(http.Get("/v1/models", auth));
  EXPECT_EQ(http.Get("/v1/models", auth)->status, 200);
  EXPECT_EQ(http.Get("/health")->status, 200);  // outside /v1: no key needed
  EXPECT_NE(http.Get("/")->body.find("<title>lora serve</title>"), std::string::npos);
  expect_error(post(chat, "{\"model\": "), 400, "invalid_request_error", "truncated JSON");
  expect_error(post(chat, R"({"model": "stories260K", "messages": [{"role": "user", "content": "hi"}], "top_p": "x"})"), 400,
               "invalid_request_error", "wrong type");
  expect_error(post(chat, R"({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]})"), 404, "not_found_error",
               "unknown model");
  expect_error(post("/v1/completions", R"({"model": "stories260K", "prompt": "a", "max_tokens": 501})"), 400,
               "invalid_request_error", "max_tokens over the cap");
  expect_error(post("/v1/completions", R"({"model": "stories260K", "prompt": ")" + std::string(5000, 'a') + "\"}"), 413,
               "request_too_large", "body over --max-body");
  expect_error(post("/v1/embeddings", "{}"), 404, "not_found_error", "unknown route");
  expect_error(post("/v1/unload_lora_adapter", R"({"lora_name": "stories260K"})"), 400, "invalid_request_error", "unload the base");

  // One slot and a queue of one: of four long requests sent at once, the first two to arrive may run, the
  // others find no room (a third too when it arrives before the engine took the first into its slot).
  const std::string endless = R"({"model": "stories260K", "prompt": "Once", "max_tokens": 500, "ignore_eos": true})";
  std::vector<std::future<int>> at_once;
  for (int i = 0; i < 4; ++i)
    at_once.push_back(std::async(std::launch::async, [&] {
      httplib::Client c("127.0.0.1", server.port());
      const auto r = c.Post("/v1/completions", auth, endless, "application/json");
      if (r && r->status == 429) expect_error(r, 429, "rate_limit_error", "queue full");
      return r ? r->status : -1;
    }));
  std::map<int, int> statuses;
  for (auto& f : at_once) ++statuses[f.get()];
  EXPECT_GE(statuses[429], 2) << "200: " << statuses[200];
  EXPECT_GE(statuses[200], 1);
  EXPECT_EQ(statuses[200] + statuses[429], 4);
  const std::string metrics = http.Get("/metrics")->body;
  EXPECT_NE(metrics.find("lora_http_errors_total{status=\"429\"} " + std::to_string(statuses[429])), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("lora_http_errors_total{status=\"401\"} 2"), std::string::npos) << metrics;

  // SIGTERM with a stream in flight and a request queued: both finish (the stream ends with [DONE]),
  // and the server exits 0.
  std::string streamed;
  int queued_status = 0;
  std::thread streamer([&] {
    httplib::Client c("127.0.0.1", server.port());
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    req.headers = auth;
    req.body = R"({"model": "stories260K", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 400,
                   "ignore_eos": true, "stream": true})";
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      streamed.append(data, n);
      return true;
    };
    c.send(req);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the stream has the slot; this one waits for it
  std::thread queued([&] {
    httplib::Client c("127.0.0.1", server.port());
    const auto r = c.Post("/v1/completions", auth, endless, "application/json");
    queued_status = r ? r->status : -1;
  });
  // SIGTERM only once the second request is really waiting (a fixed sleep lost that race under load).
  {
    httplib::Client c("127.0.0.1", server.port());
    for (int i = 0; i < 500; ++i) {
      const auto m = c.Get("/metrics", auth);
      if (m && m->body.find("lora_queue_length 1") != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  EXPECT_EQ(server.stop(SIGTERM), 0) << server.log();
  queued.join();
  streamer.join();
  EXPECT_EQ(queued_status, 200);
  EXPECT_NE(server.log().find("SIGTERM received"), std::string::npos) << server.log();
  EXPECT_NE(streamed.find("data: [DONE]"), std::string::npos) << streamed.substr(0, 400);
}

}  // namespace
}  // namespace lora
