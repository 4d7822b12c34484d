// lora serve: an OpenAI-compatible HTTP server for a base model and any number of adapters on it,
// batching requests for different adapters together (src/serve/). SIGINT / SIGTERM stop it: no new
// requests, the running ones finish (cancelled after --grace seconds), exit status 0.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "cli/adapter_options.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/template_choice.h"
#include "core/error.h"
#include "serve/api_error.h"
#include "serve/batch_engine.h"
#include "serve/http_server.h"
#include "serve/metrics.h"
#include "serve/served_models.h"

namespace lora::cli {

namespace {

struct ServeOptions {
  ModelOptions model;
  std::vector<std::string> adapters;  // NAME=PATH[:SCALE] or PATH[:SCALE]
  std::string served_name;
  std::string template_name = "auto";
  serve::ServerOptions server;
  serve::EngineOptions engine;
  double grace = 10;
};

struct NamedAdapter {
  std::string name;
  AdapterSpec spec;
};

// "zuzu=out/zuzu:0.5" -> {zuzu, out/zuzu, 0.5}; without "NAME=", the folder's or file's name.
NamedAdapter parse_named_adapter(const std::string& text) {
  const size_t eq = text.find('=');
  const bool named = eq != std::string::npos && eq > 0 && text.find('/') > eq;
  NamedAdapter a{named ? text.substr(0, eq) : "", parse_adapter_spec(named ? text.substr(eq + 1) : text)};
  if (a.name.empty()) {
    const std::filesystem::path p = std::filesystem::path(a.spec.path).lexically_normal();
    a.name = (p.has_filename() ? p : p.parent_path()).stem().string();
  }
  return a;
}

// SIGINT / SIGTERM, whichever thread the kernel hands them to (libraries start threads of their own
// before main), become a byte on a pipe that the stopping thread waits for; a second one ends the
// process at once (the handler is reset to the default).
int g_signal_pipe[2] = {-1, -1};

void on_stop_signal(int sig) {
  const char c = char(sig);
  [[maybe_unused]] const ssize_t n = write(g_signal_pipe[1], &c, 1);
  signal(sig, SIG_DFL);
}

void run_serve(const ServeOptions& o) {
  if (pipe(g_signal_pipe) != 0) fail("cannot create a pipe for the signal handler");
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not the end of the server

  const Model base = o.model.load(true);
  std::string base_name = o.served_name;
  if (base_name.empty()) {
    const std::filesystem::path p = std::filesystem::path(o.model.model).lexically_normal();
    base_name = (p.has_filename() ? p : p.parent_path()).stem().string();
  }
  const Tokenizer& tok = *base.tokenizer;
  const std::string requested_template = o.template_name;
  serve::ServedModels models(base, base_name, o.model.model, choose_template(requested_template, tok).name,
                             [&tok, requested_template](const std::string& path) {
                               return choose_template(requested_template, tok, {path}).name;
                             });
  for (const std::string& text : o.adapters) {
    const NamedAdapter a = parse_named_adapter(text);
    try {
      models.load(a.name, a.spec.path, a.spec.scale);
    } catch (const serve::ApiError& e) {
      fail("--adapter {}: {}", text, e.what());
    }
  }

  serve::EngineOptions engine_options = o.engine;
  if (engine_options.ctx <= 0) engine_options.ctx = std::min<int64_t>(base.config.max_position_embeddings, 4096);
  serve::Metrics metrics;
  serve::BatchEngine engine(base, engine_options, metrics);
  serve::HttpServer server(base, models, engine, metrics, o.server);
  const int port = server.bind();

  std::vector<std::string> names;
  for (const auto& m : models.list()) names.push_back(m->name);
  fmt::print(stderr, "lora serve: {} ({}), {} slots of {} tokens\n", fmt::join(names, ", "),
             models.list().front()->chat_template + " template", engine_options.parallel, engine_options.ctx);
  fmt::print(stderr, "lora serve: listening on http://{}:{}\n", o.server.host, port);
  std::fflush(stderr);

  std::thread stopper([&] {
    char sig = 0;
    while (read(g_signal_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    fmt::print(stderr, "lora serve: {} received, finishing the running requests\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    engine.shutdown(std::chrono::milliseconds(int64_t(o.grace * 1000)));
    server.stop();
  });
  server.listen();
  stopper.join();
  fmt::print(stderr, "lora serve: stopped\n");
}

}  // namespace

void register_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible server for a model and its adapters, with a chat page at /");
  auto o = std::make_shared<ServeOptions>();
  o->model.add_to(cmd);
  cmd->add_option("--adapter", o->adapters,
                  "adapter to serve, NAME=PATH[:SCALE] (a PEFT folder or GGUF adapter file; requests pick it by NAME; "
                  "without NAME=, the folder's name); repeatable");
  cmd->add_option("--served-model-name", o->served_name, "the base model's name in requests (default: its file or folder name)");
  cmd->add_option("--template", o->template_name,
                  "chat template (auto: each adapter's own as trained, else the model's, else alpaca)")
      ->capture_default_str();
  cmd->add_option("--host", o->server.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", o->server.port, "port (0: any free one, printed at start)")->capture_default_str();
  cmd->add_option("--api-key", o->server.api_key, "require 'Authorization: Bearer KEY' on /v1/* (default: none)");
  cmd->add_option("--parallel", o->engine.parallel, "sequences decoded together (slots of the running batch)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1024)));
  cmd->add_option("-c,--ctx", o->engine.ctx, "tokens per sequence, prompt and reply (default: the model's, at most 4096)");
  cmd->add_option("--max-queue", o->engine.max_queue, "requests waiting for a slot before new ones get 429")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--step-tokens", o->engine.step_tokens, "prompt tokens read per batched step")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-tokens", o->server.max_tokens, "the most tokens a request may ask for")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-body", o->server.max_body, "largest request body in bytes (413 beyond)")->capture_default_str();
  cmd->add_option("--grace", o->grace, "seconds the running requests get to finish after SIGINT/SIGTERM")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->callback([o] { run_serve(*o); });
}

}  // namespace lora::cli
