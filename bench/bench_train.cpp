// Training throughput and peak memory of one configuration per process (peak RSS is per process):
//
//   ./build/bench/bench_train --shape smollm2|qwen|stories [--mode lora|full] [--checkpointing]
//                             [--dtype f32|bf16] [--seq 256] [--batch 1] [--rank 16] [--steps 3]
//
// Prints one Markdown table row: tokens/s (median step), MFU against the bf16 peak (counting
// 4N FLOPs per token for LoRA — forward 2N + input gradients 2N — plus attention, 6N with
// checkpointing's recomputation; 6N / 8N for full fine-tuning), peak RSS.
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench_common.h"
#include "core/context.h"
#include "formats/model_loader.h"
#include "model/random_model.h"
#include "train/optimizer.h"
#include "train/trainable_model.h"

using namespace lora;

int main(int argc, char** argv) {
  std::string shape = "smollm2", mode = "lora", dtype = "bf16";
  bool checkpointing = false;
  int64_t seq = 256, batch = 1, rank = 16, steps = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--shape") shape = next();
    else if (a == "--mode") mode = next();
    else if (a == "--dtype") dtype = next();
    else if (a == "--checkpointing") checkpointing = true;
    else if (a == "--seq") seq = std::stoll(next());
    else if (a == "--batch") batch = std::stoll(next());
    else if (a == "--rank") rank = std::stoll(next());
    else if (a == "--steps") steps = std::stoll(next());
    else { fmt::print(stderr, "unknown option {}\n", a); return 2; }
  }
  set_thread_count(0);
  const DType dt = dtype_from_name(dtype);
  Model base = shape == "stories"
                   ? load_model(std::string(LORA_ASSETS_DIR) + "/models/stories260K/stories260K.bin",
                                LoadOptions{.weight_dtype = dt, .load_tokenizer = false})
                   : random_model(shape == "qwen" ? qwen25_05b_config() : smollm2_135m_config(), 1, dt);
  const ModelConfig& c = base.config;

  LoraConfig cfg;
  cfg.r = rank;
  cfg.lora_alpha = float(2 * rank);
  cfg.target_modules = {"all-linear"};
  TrainableModel m = mode == "full" ? TrainableModel::full(base) : TrainableModel::lora(base, cfg, 1);
  m.gradient_checkpointing = checkpointing;
  AdamW opt(m.params(), AdamWConfig{});

  std::vector<int32_t> tokens(size_t(batch * seq)), targets(size_t(batch * seq));
  for (size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = int32_t((i * 7919 + 3) % c.vocab_size);
    targets[i] = int32_t((i * 7919 + 7922) % c.vocab_size);
  }
  auto step = [&] {
    m.zero_grad();
    m.forward_backward(tokens.data(), targets.data(), batch, seq, 1.0f / float(tokens.size()));
    clip_grad_norm(m.params(), 1.0);
    opt.step(m.params(), 1e-4f);
  };
  step();  // warm-up: primitives built, buffers allocated
  const double s = bench::median_time(int(steps), step);
  const double tps = double(batch * seq) / s;

  const double n_lin = double(c.num_hidden_layers) * (double(c.hidden_size) * (c.q_dim() + 2 * c.kv_dim()) +
                                                      double(c.q_dim()) * c.hidden_size + 3.0 * c.hidden_size * c.intermediate_size) +
                       double(c.vocab_size) * c.hidden_size;
  const double attn = 4.0 * c.num_hidden_layers * (double(seq) / 2) * c.q_dim();  // per token, forward
  const double passes = (mode == "full" ? 3.0 : 2.0) + (checkpointing ? 1.0 : 0.0);  // in units of 2N
  const double flops_per_token = passes * (2.0 * n_lin + attn);
  fmt::print("| {} ({}) | {} | {} | {}x{} | {:.0f} | {:.1f}% | {:.0f} MiB |\n", shape, dtype,
             mode == "full" ? "full" : fmt::format("LoRA r={}", rank), checkpointing ? "on" : "off", batch, seq, tps,
             100.0 * tps * flops_per_token / bench::kPeakFlops, bench::peak_rss_mib());
}
