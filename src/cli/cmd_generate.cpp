// lora generate: text continuation with the KV cache; text on stdout, timing on stderr.
#include <chrono>
#include <cstdio>
#include <random>

#include <fmt/format.h>

#include "cli/adapter_options.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "model/sampler.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace lora::cli {

namespace {

struct GenerateOptions {
  ModelOptions model;
  AdapterOptions adapters;
  std::string prompt;
  int n_predict = 128;
  int ctx = 0;
  int64_t seed = -1;
  SamplingParams sampling;
  bool ignore_eos = false;
};

void run_generate(const GenerateOptions& o) {
  const Model m = o.model.load();
  const std::unique_ptr<AdapterSet> adapters = o.adapters.load(m);
  const Tokenizer& tok = *m.tokenizer;
  SamplingParams sp = o.sampling;
  sp.seed = o.seed < 0 ? std::random_device{}() : uint64_t(o.seed);

  std::vector<int32_t> prompt = tok.encode_for_model(o.prompt);
  if (prompt.empty()) prompt.push_back(tok.bos_id() >= 0 ? tok.bos_id() : 0);
  const int64_t ctx = o.ctx > 0 ? o.ctx : m.config.max_position_embeddings;
  if (int64_t(prompt.size()) >= ctx)
    fail("the prompt has {} tokens, which leaves no room in a context of {}", prompt.size(), ctx);
  const int64_t n_new = std::min<int64_t>(o.n_predict, ctx - int64_t(prompt.size()));

  Transformer model(m, 1, int64_t(prompt.size()) + n_new);
  model.set_adapters(adapters.get());
  Sampler sampler(sp);
  StreamDecoder out(tok);
  for (int32_t id : prompt) std::fputs(out.feed(id).c_str(), stdout);
  std::fflush(stdout);

  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const Tensor* logits = &model.forward(prompt.data(), 1, int64_t(prompt.size()), false);
  const auto t1 = clock::now();
  int64_t generated = 0;
  for (; generated < n_new; ++generated) {
    const int32_t next = sampler.sample(logits->f32(), m.config.vocab_size);
    if (next == tok.eos_id() && !o.ignore_eos) break;
    std::fputs(out.feed(next).c_str(), stdout);
    std::fflush(stdout);
    if (generated + 1 < n_new) logits = &model.forward(&next, 1, 1, false);
  }
  std::fputs(out.flush().c_str(), stdout);
  std::fputc('\n', stdout);
  const auto t2 = clock::now();
  const double prompt_s = std::chrono::duration<double>(t1 - t0).count();
  const double gen_s = std::chrono::duration<double>(t2 - t1).count();
  fmt::print(stderr, "prompt: {} tokens, {} | generation: {} tokens, {}\n", prompt.size(),
             rate(int64_t(prompt.size()), prompt_s), generated, rate(generated, gen_s));
}

}  // namespace

void register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Continue a prompt (text on stdout, speed on stderr)");
  auto o = std::make_shared<GenerateOptions>();
  o->model.add_to(cmd);
  o->adapters.add_to(cmd);
  cmd->add_option("-p,--prompt", o->prompt, "prompt text (default: empty, i.e. start from BOS)");
  cmd->add_option("-n,--n-predict", o->n_predict, "number of tokens to generate")->capture_default_str();
  cmd->add_option("-c,--ctx", o->ctx, "context length (default: the model's)");
  cmd->add_option("--temp", o->sampling.temperature, "temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "keep the k most likely tokens (0 = all)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "nucleus sampling threshold (1 = off)")->capture_default_str();
  cmd->add_option("-s,--seed", o->seed, "random seed (-1 = random)")->capture_default_str();
  cmd->add_flag("--ignore-eos", o->ignore_eos, "keep generating past the end-of-sequence token");
  cmd->callback([o] { run_generate(*o); });
}

}  // namespace lora::cli
