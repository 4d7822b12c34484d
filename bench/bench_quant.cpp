// Quantization throughput and the cost of computing through quantized weights:
//
//   ./build/bench/bench_quant [--m 256] [--reps 5] [--shape qwen|llama2-7b] [--errors]
//
// 1. quantize / decode-to-bf16 speed per type on a [4864, 896] weight;
// 2. for every linear shape of the model: the time (fastest of --reps) of the forward x·Wᵀ and of the
//    input gradient dy·W (x, dy: [m, ·] f32) with W in bf16 and with W in NF4 (double quantization);
// 3. with --errors: the dequantize(quantize(w)) error of every stories260K weight (Markdown table).
#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench_common.h"
#include "core/context.h"
#include "core/matmul.h"
#include "core/quant.h"
#include "formats/model_loader.h"
#include "model/quantize_model.h"
#include "model/random_model.h"

using namespace lora;

namespace {

Tensor randn(std::vector<int64_t> shape, float scale, uint64_t seed) {
  Tensor t(DType::F32, std::move(shape));
  uint64_t s = seed;
  for (int64_t i = 0; i < t.numel(); ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    t.f32()[i] = scale * (float((s >> 40) & 0xffffff) / float(1 << 24) - 0.5f) * 3.4f;
  }
  return t;
}

void throughput(int reps) {
  const Tensor w = randn({4864, 896}, 0.02f, 1);
  fmt::print("| type | quantize | decode to bf16 | bits/weight |\n|---|---|---|---|\n");
  for (const char* name : {"nf4", "fp4", "int8"}) {
    const QuantConfig cfg{quant_type_from_name(name), std::string(name) != "int8"};
    Tensor q;
    const double tq = bench::median_time(reps, [&] { q = quantize(w, cfg); });
    std::vector<uint16_t> out(size_t(w.numel()));
    const double td = bench::median_time(reps, [&] {
      const int64_t rows = w.dim(0), cols = w.dim(1);
#pragma omp parallel for
      for (int64_t r = 0; r < rows; ++r) dequantize_range_bf16(q, r * cols, (r + 1) * cols, out.data() + r * cols);
    });
    fmt::print("| {} | {:.0f} M weights/s | {:.0f} M weights/s | {:.3f} |\n", name, double(w.numel()) / tq / 1e6,
               double(w.numel()) / td / 1e6, bits_per_weight(q));
  }
}

void linear_costs(const ModelConfig& c, int64_t m, int reps) {
  struct Shape { const char* name; int64_t out, in; };
  const Shape shapes[] = {{"q/o_proj", c.q_dim(), c.hidden_size},
                          {"k/v_proj", c.kv_dim(), c.hidden_size},
                          {"gate/up_proj", c.intermediate_size, c.hidden_size},
                          {"down_proj", c.hidden_size, c.intermediate_size}};
  fmt::print("\n| weight [out, in] | x·Wᵀ bf16 | x·Wᵀ nf4 | ratio | dy·W bf16 | dy·W nf4 | ratio |\n|---|---|---|---|---|---|---|\n");
  double total16 = 0, totalq = 0;
  for (const Shape& s : shapes) {
    const Tensor w = randn({s.out, s.in}, 0.02f, 2), w16 = w.to(DType::BF16), q = quantize(w, {DType::NF4, true});
    const Tensor x = randn({m, s.in}, 1.0f, 3), dy = randn({m, s.out}, 1.0f, 4);
    Tensor y(DType::F32, {m, s.out}), dx(DType::F32, {m, s.in});
    // the fastest of `reps` runs: on a shared machine the minimum is the least disturbed estimate
    auto time = [&](auto&& f) {
      f();
      double best = 1e30;
      for (int i = 0; i < reps; ++i) {
        const double t0 = bench::now_seconds();
        f();
        best = std::min(best, bench::now_seconds() - t0);
      }
      return best;
    };
    const double f16 = time([&] { matmul(mat(x), false, mat(w16), true, mut_mat(y)); });
    const double fq = time([&] { matmul(mat(x), false, mat(q), true, mut_mat(y)); });
    const double b16 = time([&] { matmul(mat(dy), false, mat(w16), false, mut_mat(dx)); });
    const double bq = time([&] { matmul(mat(dy), false, mat(q), false, mut_mat(dx)); });
    total16 += f16 + b16;
    totalq += fq + bq;
    fmt::print("| {} [{}, {}] | {:.2f} ms | {:.2f} ms | {:.2f} | {:.2f} ms | {:.2f} ms | {:.2f} |\n", s.name, s.out, s.in,
               f16 * 1e3, fq * 1e3, fq / f16, b16 * 1e3, bq * 1e3, bq / b16);
  }
  fmt::print("\nsum over the four shapes: bf16 {:.2f} ms, nf4 {:.2f} ms, ratio {:.2f}\n", total16 * 1e3, totalq * 1e3,
             totalq / total16);
}

void stories_errors() {
  const Model m = load_model(std::string(LORA_ASSETS_DIR) + "/models/stories260K/stories260K.bin",
                             LoadOptions{.load_tokenizer = false});
  fmt::print("\n| stories260K weight | elements | NF4+DQ rel. RMS | NF4+DQ max abs | FP4+DQ rel. RMS | FP4+DQ max abs | int8 rel. RMS | int8 max abs |\n"
             "|---|---|---|---|---|---|---|---|\n");
  const char* names[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  double se[3] = {0, 0, 0}, ss_all = 0;
  for (size_t l = 0; l < m.weights.layers.size(); ++l) {
    const auto weights = linear_weights(m.weights.layers[l]);
    for (int p = 0; p < 7; ++p) {
      const Tensor& w = *weights[size_t(p)];
      double ss = 0;
      for (int64_t i = 0; i < w.numel(); ++i) ss += double(w.f32()[i]) * w.f32()[i];
      std::string row = fmt::format("| layers.{}.{} | {} ", l, names[p], w.numel());
      int k = 0;
      for (DType t : {DType::NF4, DType::FP4, DType::INT8_ROW}) {
        const Tensor d = dequantize(quantize(w, {t, true}));
        double e2 = 0, mx = 0;
        for (int64_t i = 0; i < w.numel(); ++i) {
          const double e = double(d.f32()[i]) - w.f32()[i];
          e2 += e * e;
          mx = std::max(mx, std::fabs(e));
        }
        se[k++] += e2;
        row += fmt::format("| {:.4f} | {:.2e} ", std::sqrt(e2 / ss), mx);
      }
      ss_all += ss;
      fmt::print("{}|\n", row);
    }
  }
  fmt::print("| all linear weights | | {:.4f} | | {:.4f} | | {:.5f} | |\n", std::sqrt(se[0] / ss_all), std::sqrt(se[1] / ss_all),
             std::sqrt(se[2] / ss_all));
}

}  // namespace

int main(int argc, char** argv) {
  int64_t m = 256;
  int reps = 5;
  std::string shape = "qwen";
  bool errors = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--m") m = std::stoll(next());
    else if (a == "--reps") reps = std::stoi(next());
    else if (a == "--shape") shape = next();
    else if (a == "--errors") errors = true;
    else { fmt::print(stderr, "unknown option {}\n", a); return 2; }
  }
  set_thread_count(0);
  throughput(reps);
  linear_costs(shape == "llama2-7b" ? llama2_7b_config() : qwen25_05b_config(), m, reps);
  if (errors) stories_errors();
}
