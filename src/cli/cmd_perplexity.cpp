// lora perplexity: mean negative log-likelihood over a text file in non-overlapping windows.
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/adapter_options.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "model/perplexity.h"
#include "tokenizer/tokenizer.h"

namespace lora::cli {

namespace {

struct PerplexityOptions {
  ModelOptions model;
  AdapterOptions adapters;
  std::string file;
  int ctx = 512;
  int batch = 4;
  bool json = false;
};

void run_perplexity(const PerplexityOptions& o) {
  std::ifstream in(o.file, std::ios::binary);
  if (!in) fail("{}: cannot open text file", o.file);
  std::stringstream ss;
  ss << in.rdbuf();
  const Model m = o.model.load();
  const std::unique_ptr<AdapterSet> adapters = o.adapters.load(m);
  const std::vector<int32_t> ids = m.tokenizer->encode_for_model(ss.str());
  const PerplexityResult r = perplexity(m, ids, o.ctx, o.batch, adapters.get());
  if (o.json) {
    fmt::print("{}\n", nlohmann::json{{"tokens", r.tokens}, {"nll", r.nll}, {"perplexity", r.perplexity}}.dump());
  } else {
    fmt::print("{} tokens in windows of {}: mean NLL {:.6f}, perplexity {:.4f}\n", r.tokens, o.ctx, r.nll, r.perplexity);
  }
  fmt::print(stderr, "{} ({:.2f} s)\n", rate(r.tokens, r.seconds), r.seconds);
}

}  // namespace

void register_perplexity(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "perplexity",
      "Perplexity of a text file: the tokens (with BOS) are cut into non-overlapping windows of --ctx tokens and "
      "each window predicts its tokens 2..n from the ones before them");
  auto o = std::make_shared<PerplexityOptions>();
  o->model.add_to(cmd);
  o->adapters.add_to(cmd);
  cmd->add_option("-f,--file", o->file, "text file")->required();
  cmd->add_option("-c,--ctx", o->ctx, "window length in tokens")->capture_default_str()->check(CLI::Range(2, 1 << 20));
  cmd->add_option("-b,--batch", o->batch, "windows evaluated together")->capture_default_str()->check(CLI::Range(1, 1024));
  cmd->add_flag("--json", o->json, "print {\"tokens\", \"nll\", \"perplexity\"} as one JSON object");
  cmd->callback([o] { run_perplexity(*o); });
}

}  // namespace lora::cli
