// Training throughput and peak memory of one configuration per process (peak RSS is per process):
//
//   ./build/bench/bench_train --shape smollm2|qwen|qwen3|smollm3|gemma3|phi3|llama2-7b|stories [--mode lora|full] [--checkpointing]
//                             [--dtype f32|bf16] [--quantize nf4|fp4|int8 [--no-double-quant]] [--gguf q4_k_m|q8_0|...]
//                             [--seq 256] [--batch 1] [--rank 16] [--steps 3] [--dora] [--profile]
//                             [--model FILE]   (a model file instead of a random one: a GGUF as it is on disk)
//
// Prints one Markdown table row: tokens/s (median step), MFU against the bf16 peak (counting
// 4N FLOPs per token for LoRA — forward 2N + input gradients 2N — plus attention, 6N with
// checkpointing's recomputation; 6N / 8N for full fine-tuning), stated against kPeakFlops and against the
// bf16 GEMM throughput measured in the same run, and peak RSS. --profile also prints where the time of
// the measured steps went (core/profiler.h). --gguf quantizes the random bf16 base with a llama.cpp file
// type's per-tensor mix (what `lora quantize --type` writes; the base of a LoRA on a GGUF file). With --quantize the linear
// layers of the random base are created directly in that form (QLoRA; --dtype is then the dtype of the
// embeddings and lm_head), so even the 7B shape never exists in full precision.
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench_common.h"
#include "core/context.h"
#include "formats/gguf_quant_recipe.h"
#include "core/profiler.h"
#include "formats/model_loader.h"
#include "model/quantize_model.h"
#include "model/random_model.h"
#include "train/optimizer.h"
#include "train/trainable_model.h"

using namespace lora;

int main(int argc, char** argv) {
  std::string shape = "smollm2", mode = "lora", dtype = "bf16", quantize, gguf, model_path;
  bool checkpointing = false, double_quant = true, profile = false, dora = false;
  int64_t seq = 256, batch = 1, rank = 16, steps = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--shape") shape = next();
    else if (a == "--mode") mode = next();
    else if (a == "--dtype") dtype = next();
    else if (a == "--checkpointing") checkpointing = true;
    else if (a == "--quantize") quantize = next();
    else if (a == "--gguf") gguf = next();
    else if (a == "--model") model_path = next();
    else if (a == "--no-double-quant") double_quant = false;
    else if (a == "--profile") profile = true;
    else if (a == "--dora") dora = true;
    else if (a == "--seq") seq = std::stoll(next());
    else if (a == "--batch") batch = std::stoll(next());
    else if (a == "--rank") rank = std::stoll(next());
    else if (a == "--steps") steps = std::stoll(next());
    else { fmt::print(stderr, "unknown option {}\n", a); return 2; }
  }
  set_thread_count(0);
  const DType dt = dtype_from_name(dtype);
  const double t0 = bench::now_seconds();
  const ModelConfig shape_config = shape == "qwen"        ? qwen25_05b_config()
                                   : shape == "qwen3"     ? qwen3_06b_config()
                                   : shape == "smollm3"   ? smollm3_3b_config()
                                   : shape == "gemma3"    ? gemma3_1b_config()
                                   : shape == "phi3"      ? phi3_mini_config()
                                   : shape == "llama2-7b" ? llama2_7b_config()
                                                          : smollm2_135m_config();
  Model base = !model_path.empty() ? load_model(model_path, LoadOptions{.load_tokenizer = false})
             : shape == "stories"
                   ? load_model(std::string(LORA_ASSETS_DIR) + "/models/stories260K/stories260K.bin",
                                LoadOptions{.weight_dtype = dt, .load_tokenizer = false, .quantize = quantize,
                                            .double_quant = double_quant})
               : quantize.empty()
                   ? random_model(shape_config, 1, dt)
                   : random_quantized_model(shape_config, 1, QuantConfig{quant_type_from_name(quantize), double_quant}, dt);
  const ModelConfig& c = base.config;
  if (!gguf.empty()) {  // a llama.cpp file type's mix, as `lora quantize --type` writes it
    const GGUFQuantSummary q = quantize_model_for_gguf(base, gguf_quant_recipe(gguf));
    std::string mix;
    for (const auto& [t, n] : q.tensors_per_type) mix += fmt::format(" {} {}", n, dtype_name(t));
    fmt::print(stderr, "base ready in {:.0f} s: {} ({}), {:.3f} bits/weight\n", bench::now_seconds() - t0, gguf, mix,
               8.0 * double(q.bytes) / double(q.elements));
  }
  if (!quantize.empty()) {
    const QuantSummary q = quant_summary(base);
    fmt::print(stderr, "base ready in {:.0f} s: {} linear weights in {} ({} params) at {:.4f} bits/weight, {:.0f} MiB\n",
               bench::now_seconds() - t0, q.tensors, quantize, q.elements, q.bits_per_weight, double(q.bytes) / (1 << 20));
  }

  LoraConfig cfg;
  cfg.r = rank;
  cfg.lora_alpha = float(2 * rank);
  cfg.target_modules = {"all-linear"};
  cfg.use_dora = dora;
  TrainableModel m = mode == "full" ? TrainableModel::full(base) : TrainableModel::lora(base, cfg, 1);
  m.gradient_checkpointing = checkpointing;
  AdamW opt(m.params(), AdamWConfig{});
  Profiler prof(thread_count());

  std::vector<int32_t> tokens(size_t(batch * seq)), targets(size_t(batch * seq));
  for (size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = int32_t((i * 7919 + 3) % c.vocab_size);
    targets[i] = int32_t((i * 7919 + 7922) % c.vocab_size);
  }
  auto step = [&] {
    prof.begin_step();
    m.zero_grad();
    m.forward_backward(tokens.data(), targets.data(), batch, seq, 1.0f / float(tokens.size()));
    {
      Profiler::Scope t(&prof, Phase::Optimizer);
      clip_grad_norm(m.params(), 1.0);
      opt.step(m.params(), 1e-4f);
    }
    prof.end_step();
  };
  step();  // warm-up: primitives built, buffers allocated
  prof = Profiler(thread_count());
  if (profile) m.profiler = &prof;
  const double s = bench::median_time(int(steps), step);
  fmt::print(stderr, "median step {:.3f} s\n", s);
  const double tps = double(batch * seq) / s;

  const double n_lin = double(c.num_hidden_layers) * (double(c.hidden_size) * (c.q_dim() + 2 * c.kv_dim()) +
                                                      double(c.q_dim()) * c.hidden_size + 3.0 * c.hidden_size * c.intermediate_size) +
                       double(c.vocab_size) * c.hidden_size;
  const double attn = 4.0 * c.num_hidden_layers * (double(seq) / 2) * c.q_dim();  // per token, forward
  const double passes = (mode == "full" ? 3.0 : 2.0) + (checkpointing ? 1.0 : 0.0);  // in units of 2N
  const double flops_per_token = passes * (2.0 * n_lin + attn);
  const std::string weights =
      !gguf.empty() ? gguf : quantize.empty() ? dtype : fmt::format("{}{} + {}", quantize, double_quant && quantize != "int8" ? "+dq" : "", dtype);
  const double rss = bench::peak_rss_mib();  // before the peak measurement allocates its matrices
  const double peak = bench::measured_bf16_peak();
  if (profile) fmt::print("{}\n", prof.table());
  fmt::print("| {} ({}) | {}{} | {} | {}x{} | {:.{}f} | {:.1f}% | {:.1f}% of {:.0f} | {:.0f} MiB |\n", shape, weights,
             mode == "full" ? "full" : fmt::format("LoRA r={}", rank), dora ? " DoRA" : "", checkpointing ? "on" : "off",
             batch, seq, tps, tps < 10 ? 2 : 0, 100.0 * tps * flops_per_token / bench::kPeakFlops,
             100.0 * tps * flops_per_token / peak, peak / 1e9, rss);
}
