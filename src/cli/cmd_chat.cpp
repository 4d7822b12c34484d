// lora chat: an interactive conversation with a model (and adapters) through its chat template,
// tokens streamed as they are generated. /reset starts over, /quit (or end of input) leaves.
// With -p, each prompt is answered on its own and the command exits (for scripts).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <random>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/adapter_options.h"
#include "cli/template_choice.h"
#include "core/error.h"
#include "data/chat_template.h"
#include "data/encode.h"
#include "data/stop_text.h"
#include "model/sampler.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace lora::cli {

namespace {

struct ChatOptions {
  ModelOptions model;
  AdapterOptions adapters;
  std::string template_name = "auto";
  std::string system;
  std::vector<std::string> prompts;
  int max_new_tokens = 256;
  int ctx = 0;
  int64_t seed = -1;
  SamplingParams sampling;
};

// Prints a reply as it is generated, holding back text that may be the start of a stop string.
class ReplyPrinter {
 public:
  explicit ReplyPrinter(const std::vector<std::string>& stop) : reply_(stop) {}

  // Adds text; returns true when a stop string has appeared (the reply ends before it).
  bool add(const std::string& chunk) {
    print(reply_.add(chunk));
    return reply_.stopped();
  }
  std::string finish() {
    print(reply_.finish());
    std::fputc('\n', stdout);
    std::fflush(stdout);
    return reply_.text();
  }

 private:
  static void print(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  }
  StopText reply_;
};

class ChatSession {
 public:
  ChatSession(const Model& model, const AdapterSet* adapters, const ChatTemplate& tmpl, const ChatOptions& o)
      : model_(model), tok_(*model.tokenizer), tmpl_(tmpl), o_(o),
        ctx_(o.ctx > 0 ? o.ctx : std::min<int64_t>(model.config.max_position_embeddings, 4096)),
        transformer_(model, 1, ctx_), sampler_(o.sampling) {
    transformer_.set_adapters(adapters);
  }

  // Answers `user` after the conversation so far (streamed to stdout) and returns the reply.
  std::string respond(std::vector<ChatMessage>& history, const std::string& user) {
    history.push_back({"user", user});
    std::vector<int32_t> ids = encode_segments(tok_, render_chat(tmpl_, o_.system, history));
    while (int64_t(ids.size()) + 1 >= ctx_ && history.size() > 1) {  // forget the oldest exchange
      history.erase(history.begin(), history.begin() + 2);
      ids = encode_segments(tok_, render_chat(tmpl_, o_.system, history));
    }
    if (int64_t(ids.size()) + 1 >= ctx_) {
      history.pop_back();
      fail("the message takes {} tokens, more than the context of {} allows", ids.size(), ctx_);
    }
    transformer_.reset();
    const Tensor* logits = &transformer_.forward(ids.data(), 1, int64_t(ids.size()), false);
    const int64_t budget = std::min<int64_t>(o_.max_new_tokens, ctx_ - int64_t(ids.size()));
    StreamDecoder decoder(tok_);
    ReplyPrinter printer(tmpl_.stop);
    for (int64_t n = 0; n < budget; ++n) {
      const int32_t next = sampler_.sample(logits->f32(), model_.config.vocab_size);
      if (next == tok_.eos_id()) break;
      if (tok_.is_special(next) &&
          std::find(tmpl_.stop.begin(), tmpl_.stop.end(), tok_.token_text(next)) != tmpl_.stop.end())
        break;
      if (printer.add(decoder.feed(next))) break;
      if (n + 1 < budget) logits = &transformer_.forward(&next, 1, 1, false);
    }
    printer.add(decoder.flush());
    const std::string reply = printer.finish();
    history.push_back({"assistant", reply});
    return reply;
  }

 private:
  const Model& model_;
  const Tokenizer& tok_;
  const ChatTemplate& tmpl_;
  const ChatOptions& o_;
  int64_t ctx_;
  Transformer transformer_;
  Sampler sampler_;
};

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

void run_chat(ChatOptions o) {
  o.sampling.seed = o.seed < 0 ? std::random_device{}() : uint64_t(o.seed);
  const Model base = o.model.load(true);
  const std::unique_ptr<AdapterSet> adapters = o.adapters.load(base);
  const TemplateChoice choice = choose_template(o.template_name, *base.tokenizer, o.adapters.specs);
  ChatSession session(base, adapters.get(), chat_template(choice.name), o);

  if (!o.prompts.empty()) {
    for (const std::string& p : o.prompts) {
      std::vector<ChatMessage> history;
      session.respond(history, p);
    }
    return;
  }
  const bool interactive = ::isatty(STDIN_FILENO) == 1;
  if (interactive)
    fmt::print(stderr, "chat template: {} ({}). /reset starts over, /quit leaves.\n", choice.name, choice.reason);
  std::vector<ChatMessage> history;
  for (;;) {
    if (interactive) {
      fmt::print("> ");
      std::fflush(stdout);
    }
    std::string line;
    if (!std::getline(std::cin, line)) break;
    line = trim(line);
    if (line.empty()) continue;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") {
      history.clear();
      fmt::print(stderr, "(conversation reset)\n");
      continue;
    }
    try {
      session.respond(history, line);
    } catch (const Error& e) {
      fmt::print(stderr, "error: {}\n", e.what());
    }
  }
}

}  // namespace

void register_chat(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "chat", "Chat with a model (and adapters) through its chat template; type /reset to start over, /quit to leave");
  auto o = std::make_shared<ChatOptions>();
  o->model.add_to(cmd);
  o->adapters.add_to(cmd);
  cmd->add_option("--template", o->template_name,
                  fmt::format("chat template (auto, {}); auto: the adapter's (as trained), else the model's, else alpaca",
                              fmt::join(chat_template_names(), ", ")))
      ->capture_default_str();
  cmd->add_option("--system", o->system, "system prompt (default: none)");
  cmd->add_option("-p,--prompt", o->prompts,
                  "answer this message and exit, without reading stdin; repeatable, each answered on its own line in a "
                  "fresh conversation");
  cmd->add_option("-n,--max-new-tokens", o->max_new_tokens, "longest reply in tokens")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("-c,--ctx", o->ctx, "context length (default: the model's, at most 4096)");
  cmd->add_option("--temp", o->sampling.temperature, "temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "keep the k most likely tokens (0 = all)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "nucleus sampling threshold (1 = off)")->capture_default_str();
  cmd->add_option("-s,--seed", o->seed, "random seed (-1 = random)")->capture_default_str();
  cmd->callback([o] { run_chat(*o); });
}

}  // namespace lora::cli
