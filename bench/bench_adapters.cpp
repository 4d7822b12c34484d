// Adapters at inference: decode tokens/s of the base model, with one and two LoRA adapters applied on the
// fly (AdapterSet), and of the merged model, for stories260K and a random-weight model with the shape
// of SmolLM2-135M; plus what switching, merging and writing adapters cost. Prints Markdown tables.
//
//   ./build/bench/bench_adapters [--quick]
#include <cstring>
#include <filesystem>
#include <vector>

#include <fmt/format.h>

#include "adapters/adapter_set.h"
#include "adapters/gguf_adapter.h"
#include "adapters/merge.h"
#include "adapters/peft_io.h"
#include "adapters/trainable_adapter.h"
#include "bench_common.h"
#include "core/context.h"
#include "formats/model_loader.h"
#include "model/random_model.h"
#include "model/transformer.h"

using namespace lora;

namespace {

// A LoRA of rank r on every linear layer with random factors (B nonzero): costs what a trained one costs.
Adapter random_adapter(const Model& base, int64_t r, uint64_t seed) {
  LoraConfig c;
  c.r = r;
  c.lora_alpha = float(2 * r);
  c.target_modules = {"all-linear"};
  c.init_lora_weights = "false";
  return adapter_from_trainable(TrainableModel::lora(base, c, seed));
}

double decode_tps(const Model& m, const ForwardAdapters* adapters, int64_t prompt_len, int64_t n) {
  std::vector<int32_t> prompt(static_cast<size_t>(prompt_len));
  for (int64_t i = 0; i < prompt_len; ++i) prompt[size_t(i)] = int32_t((i * 7919 + 1) % m.config.vocab_size);
  Transformer t(m, 1, prompt_len + n);
  t.set_adapters(adapters);
  std::vector<double> runs;
  for (int rep = 0; rep < 3; ++rep) {
    t.reset();
    t.forward(prompt.data(), 1, prompt_len, false);
    int32_t tok = 1;
    const double t0 = bench::now_seconds();
    for (int64_t i = 0; i < n; ++i) t.forward(&tok, 1, 1, false);
    runs.push_back(double(n) / (bench::now_seconds() - t0));
  }
  std::sort(runs.begin(), runs.end());
  return runs[1];
}

void bench_model(const std::string& name, const Model& base, int64_t r, int64_t prompt_len, int64_t n) {
  AdapterSet set(base);
  const std::string a = set.add(random_adapter(base, r, 1), "a"), b = set.add(random_adapter(base, r, 2), "b");
  const double t_base = decode_tps(base, nullptr, prompt_len, n);
  set.activate(a);
  const double t_one = decode_tps(base, &set, prompt_len, n);
  set.activate({{a, 1.0f}, {b, 0.5f}});
  const double t_two = decode_tps(base, &set, prompt_len, n);
  set.activate(a);
  double merge_s = 0;
  Model merged;
  merge_s = bench::median_time(1, [&] { merged = merged_model(set); });
  const double t_merged = decode_tps(merged, nullptr, prompt_len, n);
  const double switch_s = bench::median_time(5, [&] {
    set.activate(b);
    set.activate(a);
  }) / 2;
  fmt::print("| {} | r={} | {:.1f} | {:.1f} ({:.0f}%) | {:.1f} ({:.0f}%) | {:.1f} | {:.2f} ms | {:.0f} ms |\n", name, r, t_base,
             t_one, 100 * t_one / t_base, t_two, 100 * t_two / t_base, t_merged, 1e3 * switch_s, 1e3 * merge_s);
}

void bench_files(const Model& base, int64_t r) {
  const Adapter a = random_adapter(base, r, 3);
  const std::string dir = (std::filesystem::temp_directory_path() / "lora-bench-adapter").string();
  const double peft_w = bench::median_time(3, [&] { write_peft_adapter(a, dir); });
  const double peft_r = bench::median_time(3, [&] { read_peft_adapter(dir); });
  const double gguf_w = bench::median_time(3, [&] { write_gguf_adapter(a, base, dir + ".gguf"); });
  const double gguf_r = bench::median_time(3, [&] { read_gguf_adapter(dir + ".gguf", &base.config); });
  fmt::print("| SmolLM2-135M shape, r={} ({:.1f} M params) | {:.0f} ms | {:.0f} ms | {:.0f} ms | {:.0f} ms |\n", r,
             double(a.parameter_count()) / 1e6, 1e3 * peft_w, 1e3 * peft_r, 1e3 * gguf_w, 1e3 * gguf_r);
  std::filesystem::remove_all(dir);
  std::filesystem::remove(dir + ".gguf");
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int threads = set_thread_count(0);
  const int64_t prompt_len = quick ? 32 : 128, n = quick ? 16 : 64;
  fmt::print("threads: {}, prompt {} tokens, then {} decoded tokens (batch 1), median of 3\n\n", threads, prompt_len, n);
  fmt::print("| model | adapters | base tok/s | 1 adapter tok/s | 2 adapters tok/s | merged tok/s | switch | merge |\n"
             "|---|---|---|---|---|---|---|---|\n");
  LoadOptions o;
  o.load_tokenizer = false;
  const Model stories = load_model(std::string(LORA_ASSETS_DIR) + "/models/stories260K/stories260K.bin", o);
  bench_model("stories260K", stories, 8, prompt_len, n);
  const Model smol = random_model(smollm2_135m_config(), 1);
  bench_model("SmolLM2-135M shape (f32)", smol, 16, prompt_len, n);

  fmt::print("\n| adapter (all linear layers) | write PEFT | read PEFT | write GGUF | read GGUF |\n|---|---|---|---|---|\n");
  bench_files(smol, 16);
  fmt::print("\npeak RSS: {:.0f} MiB\n", bench::peak_rss_mib());
}
