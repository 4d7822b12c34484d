#include "serve/http_server.h"

#include <httplib.h>

#include <atomic>
#include <ctime>

#include "core/error.h"
#include "model/model.h"
#include "serve/api_error.h"
#include "serve/batch_engine.h"
#include "serve/job.h"
#include "serve/metrics.h"
#include "serve/openai_request.h"
#include "serve/openai_response.h"
#include "serve/served_models.h"
#include "serve/web_page.h"

namespace lora::serve {

using nlohmann::json;

namespace {

// Compares every byte whatever the first difference, so the time taken tells nothing about the key.
bool same_secret(const std::string& given, const std::string& expected) {
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) diff |= uint8_t(given[i] ^ expected[i % expected.size()]);
  return diff == 0;
}

}  // namespace

struct HttpServer::Impl {
  const Model& base;
  ServedModels& models;
  BatchEngine& engine;
  Metrics& metrics;
  ServerOptions options;
  httplib::Server http;
  std::atomic<int64_t> next_id{1};

  Impl(const Model& base, ServedModels& models, BatchEngine& engine, Metrics& metrics, ServerOptions options)
      : base(base), models(models), engine(engine), metrics(metrics), options(std::move(options)) {}

  void send_json(httplib::Response& res, const json& body, int status = 200) {
    res.status = status;
    res.set_content(to_wire(body), "application/json");
  }
  void send_error(httplib::Response& res, const ApiError& e) {
    metrics.http_error(e.status);
    send_json(res, e.to_json(), e.status);
  }

  // Runs a handler, turning what it throws into OpenAI's error JSON.
  template <typename F>
  httplib::Server::Handler guarded(F handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      try {
        handler(req, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      } catch (const std::exception& e) {
        send_error(res, ApiError(500, e.what()));
      }
    };
  }

  void routes();
  void completions(const httplib::Request& req, httplib::Response& res, bool chat);
  void stream_response(httplib::Response& res, const ResponseHeader& header, const CompletionRequest& r,
                       std::shared_ptr<GenerationStream> stream);
};

void HttpServer::Impl::routes() {
  // Authentication before anything else under /v1.
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (options.api_key.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    if (same_secret(req.get_header_value("Authorization"), "Bearer " + options.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "a valid API key is needed: send 'Authorization: Bearer KEY'", "", "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // Errors httplib answers itself (unknown route, body over the limit) as JSON too.
  http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string message = res.status == 404   ? "no route " + req.method + " " + req.path
                                : res.status == 413 ? "the request body is larger than this server's limit of " +
                                                          std::to_string(options.max_body) + " bytes"
                                                    : "HTTP error " + std::to_string(res.status) + " for " + req.method + " " + req.path;
    metrics.http_error(res.status);
    res.set_content(to_wire(ApiError(res.status, message).to_json()), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));

  http.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content(web_page_html(), "text/html; charset=utf-8"); });
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) { send_json(res, {{"status", "ok"}}); });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    metrics.set_adapters(int64_t(models.adapter_count()));
    res.set_content(metrics.prometheus(), "text/plain; version=0.0.4");
  });
  http.Get("/v1/models", guarded([this](const httplib::Request&, httplib::Response& res) {
    send_json(res, models_json(models.list(), engine.options().ctx));
  }));
  http.Post("/v1/chat/completions", guarded([this](const httplib::Request& req, httplib::Response& res) {
    completions(req, res, true);
  }));
  http.Post("/v1/completions", guarded([this](const httplib::Request& req, httplib::Response& res) {
    completions(req, res, false);
  }));
  http.Post("/v1/load_lora_adapter", guarded([this](const httplib::Request& req, httplib::Response& res) {
    const AdapterRequest r = parse_load_adapter_request(req.body);
    models.load(r.name, r.path);
    res.set_content("Success: LoRA adapter '" + r.name + "' added successfully.", "text/plain");
  }));
  http.Post("/v1/unload_lora_adapter", guarded([this](const httplib::Request& req, httplib::Response& res) {
    const AdapterRequest r = parse_unload_adapter_request(req.body);
    models.unload(r.name);
    res.set_content("Success: LoRA adapter '" + r.name + "' removed successfully.", "text/plain");
  }));
}

void HttpServer::Impl::completions(const httplib::Request& req, httplib::Response& res, bool chat) {
  const CompletionRequest r = chat ? parse_chat_request(req.body) : parse_completion_request(req.body);
  std::shared_ptr<const ServedModel> model = models.find(r.model);
  if (!model) throw ApiError(404, "the model '" + r.model + "' does not exist", "model", "model_not_found");
  const ResponseHeader header{chat, (chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++), r.model,
                              int64_t(std::time(nullptr))};
  std::shared_ptr<GenerationStream> stream = engine.submit(make_job(r, std::move(model), *base.tokenizer, options.max_tokens));
  if (r.stream) return stream_response(res, header, r, std::move(stream));

  Completion c;
  c.with_logprobs = r.logprobs >= 0;
  for (;;) {
    std::optional<GenerationEvent> e = stream->next(std::chrono::milliseconds(500));
    if (!e) continue;
    c.text += e->text;
    if (e->logprob) c.logprobs.push_back(*e->logprob);
    if (!e->last()) continue;
    if (e->finish_reason == "error") throw ApiError(500, "generation failed: " + e->error);
    if (e->finish_reason == "cancelled") throw ApiError(503, "the request was cancelled: the server is shutting down");
    c.finish_reason = e->finish_reason;
    c.prompt_tokens = e->prompt_tokens;
    c.completion_tokens = e->completion_tokens;
    break;
  }
  send_json(res, completion_json(header, c));
}

// Server-sent events: "data: {chunk}\n\n" per generated token, then the finish reason, the usage when
// asked, and "data: [DONE]". A client that goes away cancels its request, which frees its slot.
void HttpServer::Impl::stream_response(httplib::Response& res, const ResponseHeader& header, const CompletionRequest& r,
                                       std::shared_ptr<GenerationStream> stream) {
  struct State {
    bool started = false, done = false;
  };
  auto state = std::make_shared<State>();
  const bool include_usage = r.include_usage;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, header, include_usage, stream, state](size_t, httplib::DataSink& sink) {
        const auto send = [&](const json& j) {
          const std::string event = "data: " + to_wire(j) + "\n\n";
          return sink.write(event.data(), event.size());
        };
        if (state->done) return false;
        if (!state->started) {
          state->started = true;
          if (header.chat && !send(chunk_json(header, "", nullptr, "", true))) return stream->cancel(), false;
        }
        std::optional<GenerationEvent> e = stream->next(std::chrono::milliseconds(200));
        if (!e) {
          if (!sink.is_writable()) return stream->cancel(), false;
          return true;  // asked again
        }
        if ((!e->text.empty() || e->logprob) &&
            !send(chunk_json(header, e->text, e->logprob ? &*e->logprob : nullptr, "")))
          return stream->cancel(), false;
        if (!e->last()) return true;
        if (e->finish_reason == "error") {
          send(ApiError(500, "generation failed: " + e->error).to_json());
        } else {
          send(chunk_json(header, "", nullptr, e->finish_reason));
          if (include_usage) send(usage_chunk_json(header, e->prompt_tokens, e->completion_tokens));
        }
        static const std::string kDone = "data: [DONE]\n\n";
        sink.write(kDone.data(), kDone.size());
        state->done = true;
        sink.done();
        return true;
      },
      [stream](bool success) {
        if (!success) stream->cancel();
      });
}

HttpServer::HttpServer(const Model& base, ServedModels& models, BatchEngine& engine, Metrics& metrics, ServerOptions options)
    : impl_(std::make_unique<Impl>(base, models, engine, metrics, std::move(options))) {
  Impl& s = *impl_;
  s.http.set_payload_max_length(s.options.max_body);
  // One worker per streaming client: every slot and every queued request can hold a connection, plus a
  // few for health checks, metrics and adapter management.
  const size_t threads = s.options.threads > 0 ? size_t(s.options.threads)
                                               : size_t(s.engine.options().parallel + s.engine.options().max_queue + 4);
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.routes();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  Impl& s = *impl_;
  const int port = s.options.port == 0 ? s.http.bind_to_any_port(s.options.host)
                                       : (s.http.bind_to_port(s.options.host, s.options.port) ? s.options.port : -1);
  if (port < 0) fail("cannot listen on {}:{} (address in use, or not an address of this machine?)", s.options.host, s.options.port);
  return port;
}

void HttpServer::listen() { impl_->http.listen_after_bind(); }

void HttpServer::stop() { impl_->http.stop(); }

}  // namespace lora::serve
