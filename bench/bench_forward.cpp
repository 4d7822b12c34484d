// Inference throughput: GEMM GFLOP/s of the matmul interface, then prefill and decode tokens/s for
// stories260K and random-weight models with the shapes of SmolLM2-135M and Qwen2.5-0.5B in fp32 and
// bf16. Prints a Markdown table; the PyTorch baseline is bench/pytorch_baseline.py.
//
//   ./build/bench/bench_forward [--quick]
#include <algorithm>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "bench_common.h"
#include "core/context.h"
#include "core/matmul.h"
#include "formats/model_loader.h"
#include "model/random_model.h"
#include "model/transformer.h"

using namespace lora;

namespace {

void bench_gemm(int64_t m, int64_t n, int64_t k, DType dt) {
  Tensor a = Tensor(DType::F32, {m, k}), b = Tensor(DType::F32, {n, k}), c(DType::F32, {m, n});
  for (int64_t i = 0; i < a.numel(); ++i) a.f32()[i] = float(i % 7) * 0.1f;
  for (int64_t i = 0; i < b.numel(); ++i) b.f32()[i] = float(i % 5) * 0.1f;
  const Tensor a2 = a.to(dt), b2 = b.to(dt);
  auto run = [&] { matmul(mat(a2), false, mat(b2), true, mut_mat(c)); };
  run();
  const double s = bench::median_time(7, run);
  fmt::print("| gemm {}x{}x{} | {} | {:.1f} GFLOP/s |\n", m, n, k, dtype_name(dt), 2.0 * m * n * k / s / 1e9);
}

struct Row {
  std::string name;
  double params, prefill_tps, decode_tps, mfu;
};

// Forward FLOPs per prompt token: 2 per weight of the blocks' linear layers, plus attention (QKᵀ and
// PV, 2 * 2 * ctx * q_dim per layer at context ctx). Prefill computes the lm_head for the last token
// only, so it is not counted per token.
double flops_per_token(const ModelConfig& c, double ctx) {
  const double lin = double(c.num_hidden_layers) *
                     (double(c.hidden_size) * (c.q_dim() + 2 * c.kv_dim()) + double(c.q_dim()) * c.hidden_size +
                      3.0 * c.hidden_size * c.intermediate_size);
  return 2.0 * lin + 4.0 * c.num_hidden_layers * ctx * c.q_dim();
}

Row bench_model(const std::string& name, const Model& m, int64_t prompt_len, int64_t decode_len) {
  std::vector<int32_t> prompt(static_cast<size_t>(prompt_len));
  for (int64_t i = 0; i < prompt_len; ++i) prompt[i] = int32_t((i * 7919 + 1) % m.config.vocab_size);
  Transformer model(m, 1, prompt_len + decode_len);
  model.forward(prompt.data(), 1, prompt_len, false);  // warm-up: primitives built, pages touched
  double prefill = bench::median_time(3, [&] {
    model.reset();
    model.forward(prompt.data(), 1, prompt_len, false);
  });
  model.reset();
  model.forward(prompt.data(), 1, prompt_len, false);
  const double t0 = bench::now_seconds();
  int32_t tok = 1;
  for (int64_t i = 0; i < decode_len; ++i) model.forward(&tok, 1, 1, false);
  const double decode = bench::now_seconds() - t0;
  const double prefill_tps = double(prompt_len) / prefill;
  const double mfu = flops_per_token(m.config, double(prompt_len) / 2) * prefill_tps / bench::kPeakFlops;
  return {name, double(m.parameter_count()), prefill_tps, double(decode_len) / decode, mfu};
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int threads = set_thread_count(0);
  fmt::print("threads: {}\n\n| GEMM (M x N x K, C = A·Bᵀ) | dtype | throughput |\n|---|---|---|\n", threads);
  for (DType dt : {DType::F32, DType::BF16}) {
    bench_gemm(512, 896, 896, dt);
    bench_gemm(512, 4864, 896, dt);
    bench_gemm(2048, 2048, 2048, dt);
    bench_gemm(1, 4864, 896, dt);
  }

  const int64_t prompt_len = quick ? 64 : 256, decode_len = quick ? 16 : 64;
  std::vector<Row> rows;
  const std::string stories = std::string(LORA_ASSETS_DIR) + "/models/stories260K/stories260K.bin";
  {
    const Model m = load_model(stories, LoadOptions{.load_tokenizer = false});
    rows.push_back(bench_model("stories260K (f32)", m, prompt_len, decode_len));
  }
  for (DType dt : {DType::F32, DType::BF16}) {
    rows.push_back(bench_model(fmt::format("SmolLM2-135M shape ({})", dtype_name(dt)),
                               random_model(smollm2_135m_config(), 1, dt), prompt_len, decode_len));
    rows.push_back(bench_model(fmt::format("Qwen2.5-0.5B shape ({})", dtype_name(dt)),
                               random_model(qwen25_05b_config(), 1, dt), prompt_len, decode_len));
  }
  fmt::print("\nprompt {} tokens, decode {} tokens, batch 1\n\n", prompt_len, decode_len);
  fmt::print("| model | params | prefill tok/s | decode tok/s | prefill MFU (bf16 peak) |\n|---|---|---|---|---|\n");
  for (const Row& r : rows)
    fmt::print("| {} | {:.1f} M | {:.0f} | {:.1f} | {:.1f}% |\n", r.name, r.params / 1e6, r.prefill_tps, r.decode_tps,
               100 * r.mfu);
  fmt::print("\npeak RSS: {:.0f} MiB\n", bench::peak_rss_mib());
}
