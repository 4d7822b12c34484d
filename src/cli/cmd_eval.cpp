// lora eval: mean loss over the trained-on tokens of a dataset, and perplexity, for a model with or
// without adapters; the data go through the same pipeline as in `lora train`.
#include <chrono>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/data_options.h"
#include "adapters/merge.h"
#include "cli/adapter_options.h"
#include "cli/template_choice.h"
#include "core/error.h"
#include "data/dataset.h"
#include "tokenizer/tokenizer.h"
#include "train/evaluate.h"

namespace lora::cli {

namespace {

struct EvalOptions {
  ModelOptions model;
  AdapterOptions adapters;
  DataOptions data;
  int64_t batch_size = 4;
  bool json = false;
};

void run_eval(const EvalOptions& o) {
  if (o.data.data.empty()) fail("lora eval: no data; give -d FILE");
  o.data.validate();
  const Model base = o.model.load(true);
  const std::unique_ptr<AdapterSet> adapters = o.adapters.load(base);
  const Model model = adapters ? merged_model(*adapters) : base;  // folded in: the batched evaluation runs at full speed
  const TemplateChoice tmpl = choose_template(o.data.template_name, *model.tokenizer, o.adapters.specs);
  const Dataset data = build_dataset(o.data.dataset_options(model.config.max_position_embeddings, 0), *model.tokenizer,
                                     chat_template(tmpl.name));
  if (!o.json) {
    fmt::print(stderr, "chat template: {} ({})\n", tmpl.name, tmpl.reason);
    for (const std::string& line : data.report) fmt::print(stderr, "data: {}\n", line);
  }
  const auto start = std::chrono::steady_clock::now();
  const EvalResult r = evaluate_examples(model, data.train, o.batch_size);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (o.json) {
    fmt::print("{}\n", nlohmann::json{{"loss", r.loss}, {"perplexity", r.perplexity}, {"tokens", r.tokens}}.dump());
  } else {
    fmt::print("loss {:.6f}, perplexity {:.4f} over {} trained-on tokens of {} examples\n", r.loss, r.perplexity, r.tokens,
               data.train.size());
    fmt::print(stderr, "{} ({:.2f} s)\n", rate(data.train_tokens, seconds), seconds);
  }
}

}  // namespace

void register_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval",
      "Mean loss over the tokens training would train on (responses, unless --train-on-prompt) and perplexity, on a "
      "dataset, with or without adapters");
  auto o = std::make_shared<EvalOptions>();
  o->model.add_to(cmd);
  o->adapters.add_to(cmd);
  o->data.add_to(cmd, false);
  cmd->add_option("-b,--batch-size", o->batch_size, "sequences evaluated together")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--json", o->json, "print {\"loss\", \"perplexity\", \"tokens\"} as one JSON object")->default_str("false");
  cmd->callback([o] { run_eval(*o); });
}

}  // namespace lora::cli
