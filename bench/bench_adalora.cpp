// AdaLoRA against LoRA at the same final parameter budget, on the real stories260K model fine-tuned on
// the Zuzu stories (tests/data): LoRA with r = target_r on every linear layer vs AdaLoRA starting at
// init_r and pruned to target_r per matrix on average. Prints a Markdown table: final trainable
// parameters, training loss (mean of the last 10 steps), seconds per step; writes the AdaLoRA run's
// adapter, rank_allocation.png and metrics into OUT.
//
//   ./build/bench/bench_adalora [--steps 200] [--init-r 12] [--target-r 4] [--out /tmp/bench-adalora]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "core/context.h"
#include "formats/model_loader.h"
#include "tokenizer/tokenizer.h"
#include "train/adalora.h"
#include "train/rank_report.h"
#include "train/trainer.h"

using namespace lora;

namespace {

struct Outcome {
  int64_t params = 0;
  double loss = 0, seconds_per_step = 0;
};

double tail_mean(const std::vector<StepLog>& h, size_t n) {
  double s = 0;
  for (size_t i = h.size() - n; i < h.size(); ++i) s += h[i].loss;
  return s / double(n);
}

Outcome train(const Model& base, const LoraConfig& cfg, const std::vector<TrainExample>& data, int64_t steps,
              const std::string& out, std::string* table) {
  TrainableModel m = TrainableModel::lora(base, cfg, 1);
  TrainingArguments a;
  a.output_dir = out;
  a.max_steps = steps;
  a.batch_size = 4;
  a.learning_rate = 1e-2;
  a.warmup_steps = 10;
  a.logging_steps = 10;
  a.seed = 3;
  Trainer t(m, a, data);
  const auto t0 = std::chrono::steady_clock::now();
  t.train();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Outcome o;
  o.loss = tail_mean(t.history(), 10);
  o.seconds_per_step = s / double(steps);
  if (t.rank_allocator()) {
    // parameters that remain: every kept triplet is a row of A, an entry of E and a column of B
    for (LoraLinear* l : m.lora_layers())
      for (const auto& [path, rank] : t.rank_allocator()->ranks())
        if (path == l->path) o.params += rank * (l->in_features + l->out_features + 1);
    *table = format_rank_table(t.rank_allocator()->ranks());
  } else {
    o.params = m.trainable_parameter_count();
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t steps = 200, init_r = 12, target_r = 4;
  std::string out = "/tmp/bench-adalora";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--steps") steps = std::stoll(next());
    else if (a == "--init-r") init_r = std::stoll(next());
    else if (a == "--target-r") target_r = std::stoll(next());
    else if (a == "--out") out = next();
    else { fmt::print(stderr, "unknown option {}\n", a); return 2; }
  }
  set_thread_count(0);
  const Model base = load_model(std::string(LORA_ASSETS_DIR) + "/models/stories260K/stories260K.bin");
  std::ifstream in(std::string(LORA_DATA_DIR) + "/zuzu_stories.txt");
  std::vector<TrainExample> data;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) {
      TrainExample e;
      e.input_ids = base.tokenizer->encode_for_model(line);
      e.labels = e.input_ids;
      data.push_back(e);
    }

  LoraConfig lora;
  lora.r = target_r;
  lora.lora_alpha = float(2 * target_r);
  lora.target_modules = {"all-linear"};
  LoraConfig ada = lora;
  ada.r = 8;
  ada.lora_alpha = float(2 * init_r);
  ada.adalora = AdaLoraOptions{};
  ada.adalora->init_r = init_r;
  ada.adalora->target_r = target_r;
  ada.adalora->tinit = steps / 10;
  ada.adalora->tfinal = steps / 5;
  ada.adalora->delta_t = 5;

  std::string table;
  const Outcome l = train(base, lora, data, steps, out + "-lora", nullptr);
  const Outcome a = train(base, ada, data, steps, out, &table);
  fmt::print("stories260K on tests/data/zuzu_stories.txt, {} steps, batch 4, lr 1e-2 cosine, all linear layers\n\n", steps);
  fmt::print("| method | final trainable params | train loss (last 10 steps) | s/step |\n|---|---|---|---|\n");
  fmt::print("| LoRA r={} | {} | {:.4f} | {:.3f} |\n", target_r, l.params, l.loss, l.seconds_per_step);
  fmt::print("| AdaLoRA r {}→{} (avg) | {} | {:.4f} | {:.3f} |\n", init_r, target_r, a.params, a.loss, a.seconds_per_step);
  fmt::print("\nAdaLoRA final ranks:\n\n```\n{}```\nadapter and rank_allocation.png in {}\n", table, out);
}
