#pragma once
// `lora serve`'s HTTP front: OpenAI's endpoints over the batch engine, the adapters' run-time loading,
// health, metrics and the web page. Every error is OpenAI's {"error": {...}} JSON with its status.
//
//   GET  /                          the chat page (web_page.h)
//   GET  /health                    {"status": "ok"}
//   GET  /metrics                   Prometheus text
//   GET  /v1/models                 the base and each adapter ("parent": the base)
//   POST /v1/chat/completions       chat through the model's (or adapter's) template; "stream": true for SSE
//   POST /v1/completions            text continuation
//   POST /v1/load_lora_adapter      {"lora_name", "lora_path"}
//   POST /v1/unload_lora_adapter    {"lora_name"}
//
// With an API key, /v1/* needs "Authorization: Bearer KEY" (401 otherwise).
#include <cstdint>
#include <memory>
#include <string>

namespace lora {
struct Model;
}

namespace lora::serve {

class BatchEngine;
class Metrics;
class ServedModels;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;              // 0: any free port (port() tells which)
  std::string api_key;          // empty: no authentication
  size_t max_body = 1 << 20;    // bytes; a larger body is answered 413
  int64_t max_tokens = 4096;    // the most a request may ask for (400 beyond)
  int threads = 0;              // HTTP worker threads; 0: enough for every slot and queued request
};

class HttpServer {
 public:
  HttpServer(const Model& base, ServedModels& models, BatchEngine& engine, Metrics& metrics, ServerOptions options);
  ~HttpServer();

  // Binds the address (lora::Error when it cannot) and returns the port.
  int bind();
  // Serves until stop(); call after bind().
  void listen();
  // Closes the listening socket and ends streams still open; listen() then returns.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lora::serve
