#include "adapters/lora_linear.h"

#include <cmath>
#include <optional>
#include <vector>

#include "core/error.h"
#include "core/matmul.h"
#include "core/parallel.h"
#include "core/quant.h"
#include "kernels/simd.h"

namespace lora {

LoraLinear::LoraLinear(std::string p, int64_t in, int64_t out, int64_t rank, float s, float drop, bool dora)
    : path(std::move(p)), in_features(in), out_features(out), r(rank), scaling(s), dropout(drop), use_dora(dora),
      lora_a(DType::F32, {rank, in}), lora_b(DType::F32, {out, rank}),
      grad_a(DType::F32, {rank, in}), grad_b(DType::F32, {out, rank}) {
  if (dora) {
    magnitude = Tensor(DType::F32, {out});
    grad_magnitude = Tensor(DType::F32, {out});
  }
}

void LoraLinear::add_singular_values() {
  if (use_dora) fail("{}: AdaLoRA does not support DoRA", path);
  lora_e = Tensor(DType::F32, {r, 1});
  grad_e = Tensor(DType::F32, {r, 1});
}

namespace {

// E ⊙ A: row k of A scaled by E_k.
Tensor scale_rows(const Tensor& a, const Tensor& e) {
  Tensor out = a.clone();
  const int64_t rows = a.dim(0), cols = a.dim(1);
  for (int64_t k = 0; k < rows; ++k)
    for (int64_t i = 0; i < cols; ++i) out.f32()[k * cols + i] *= e.f32()[k];
  return out;
}

}  // namespace

Tensor LoraLinear::delta_weight() const {
  Tensor delta(DType::F32, {out_features, in_features});
  if (r == 0) return delta;
  matmul(mat(lora_b), false, mat(adalora() ? scale_rows(lora_a, lora_e) : lora_a), false, mut_mat(delta), scaling);
  return delta;
}

LoraLinear LoraLinear::folded() const {
  if (!adalora()) fail("{}: folded() is for AdaLoRA layers", path);
  std::vector<int64_t> kept;
  for (int64_t k = 0; k < r; ++k)
    if (lora_e.f32()[k] != 0.0f) kept.push_back(k);
  LoraLinear f(path, in_features, out_features, int64_t(kept.size()), scaling, dropout, false);
  const int64_t k_new = f.r;
  for (int64_t j = 0; j < k_new; ++j) {
    const int64_t k = kept[size_t(j)];
    for (int64_t i = 0; i < in_features; ++i) f.lora_a.f32()[j * in_features + i] = lora_e.f32()[k] * lora_a.f32()[k * in_features + i];
    for (int64_t o = 0; o < out_features; ++o) f.lora_b.f32()[o * k_new + j] = lora_b.f32()[o * r + k];
  }
  return f;
}

namespace {

// ‖W + s B A‖ of every output row, in double.
Tensor dora_weight_norm(const Tensor& weight, const LoraLinear& l) {
  const Tensor delta = l.delta_weight();
  Tensor norm(DType::F32, {l.out_features});
  const MatView w = mat(weight);
#pragma omp parallel
  {
    std::vector<float> row(size_t(l.in_features));  // a quantized weight is decoded one row at a time
#pragma omp for
    for (int64_t o = 0; o < l.out_features; ++o) {
      if (weight.quantized()) dequantize_range(weight, o * l.in_features, (o + 1) * l.in_features, row.data());
      double ss = 0;
      for (int64_t i = 0; i < l.in_features; ++i) {
        const double v = double(weight.quantized() ? row[size_t(i)] : w.at(o, i)) + delta.f32()[o * l.in_features + i];
        ss += v * v;
      }
      norm.f32()[o] = float(std::sqrt(ss));
    }
  }
  return norm;
}

}  // namespace

void lora_down_forward(const LoraLinear& l, const Tensor& x, LinearSaved& s, std::mt19937_64* rng) {
  const int64_t n = mat(x).rows;
  // x_d = dropout(x): kept entries scaled by 1/(1-p) so the expectation is unchanged.
  const bool drop = l.dropout > 0.0f && rng != nullptr;
  if (drop) {
    // x_d in x's own type (f32, or bf16 on the bf16 path), so that A x_d multiplies like A x.
    s.x_drop = Tensor(x.dtype(), {n, l.in_features});
    s.keep = Tensor(DType::U8, {n, l.in_features});
    std::bernoulli_distribution keep(1.0 - l.dropout);
    const float scale = 1.0f / (1.0f - l.dropout);
    uint8_t* k = s.keep.data_as<uint8_t>();
    auto fill = [&](const auto* xs, auto* d) {
      for (int64_t i = 0; i < n * l.in_features; ++i) {
        k[i] = keep(*rng) ? 1 : 0;
        simd::put(d[i], k[i] ? simd::to_f32(xs[i]) * scale : 0.0f);
      }
    };
    if (x.dtype() == DType::BF16)
      fill(x.data_as<bf16>(), s.x_drop.data_as<bf16>());
    else
      fill(x.f32(), s.x_drop.f32());
  } else {
    s.x_drop = Tensor();
    s.keep = Tensor();
  }
  if (s.u.empty() || s.u.dim(0) != n || s.u.dim(1) != l.r) s.u = Tensor(DType::F32, {n, l.r});
  matmul(mat(drop ? s.x_drop : x), false, mat(l.lora_a), true, mut_mat(s.u));  // u = A x_d
  if (l.adalora()) {  // u = E ⊙ A x_d, keeping A x_d for E's gradient
    s.u_a = s.u.clone();
    const float* e = l.lora_e.f32();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < l.r; ++k) s.u.f32()[i * l.r + k] *= e[k];
  }
}

void lora_down_backward(LoraLinear& l, const Tensor& x, const LinearSaved& s, const Tensor& du_in, Tensor* dx,
                        const Tensor* extra_dxd, bool accumulate_dx) {
  const bool drop = !s.x_drop.empty();
  Tensor du_scaled;
  if (l.adalora()) {  // u = E ⊙ u_a:  dE += Σ_rows du ⊙ u_a,  du_a = E ⊙ du
    const int64_t n = du_in.dim(0), r = l.r;
    du_scaled = du_in.clone();
    const float* e = l.lora_e.f32();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < r; ++k) {
        l.grad_e.f32()[k] += du_in.f32()[i * r + k] * s.u_a.f32()[i * r + k];
        du_scaled.f32()[i * r + k] *= e[k];
      }
  }
  const Tensor& du = l.adalora() ? du_scaled : du_in;
  matmul(mat(du), true, mat(drop ? s.x_drop : x), false, mut_mat(l.grad_a), 1.0f, 1.0f);  // dA += duᵀ x_d
  if (!dx) return;
  if (!drop) {
    matmul(mat(du), false, mat(l.lora_a), false, mut_mat(*dx), 1.0f, accumulate_dx ? 1.0f : 0.0f);  // dx (+)= du A
    if (extra_dxd)
      for (int64_t i = 0; i < dx->numel(); ++i) dx->f32()[i] += extra_dxd->f32()[i];
    return;
  }
  // x_d = mask ⊙ x / (1-p): the gradient reaching x_d goes back through the same mask.
  Tensor dxd = extra_dxd ? extra_dxd->clone() : Tensor(DType::F32, {mat(x).rows, l.in_features});
  matmul(mat(du), false, mat(l.lora_a), false, mut_mat(dxd), 1.0f, extra_dxd ? 1.0f : 0.0f);
  const float scale = 1.0f / (1.0f - l.dropout);
  const uint8_t* k = s.keep.data_as<uint8_t>();
  float* dxv = dx->f32();
  for (int64_t i = 0; i < dx->numel(); ++i) {
    const float v = k[i] ? dxd.f32()[i] * scale : 0.0f;
    dxv[i] = accumulate_dx ? dxv[i] + v : v;
  }
}

void adapted_linear_forward(const LinearParams& p, const Tensor& x, Tensor& y, LinearSaved* saved,
                            std::mt19937_64* rng) {
  LoraLinear* l = p.lora;
  const int64_t n = mat(x).rows;
  const double base_flops = 2.0 * double(n) * double(mat(*p.weight).rows) * double(mat(*p.weight).cols);
  if (!l) {  // y = W x + b
    Profiler::Scope timed(p.profiler, Phase::BaseForward, base_flops);
    linear(x, *p.weight, p.bias, y);
    return;
  }
  LinearSaved local;
  LinearSaved& s = saved ? *saved : local;
  {
    Profiler::Scope timed(p.profiler, Phase::LoraProducts, 2.0 * double(n) * double(l->r) * double(l->in_features));
    lora_down_forward(*l, x, s, rng);
  }
  const bool drop = !s.x_drop.empty();

  if (!l->use_dora) {
    {
      // s B u first, then the base product adds W x to it in its output pass (oneDNN's sum post-op): one
      // pass over y fewer than adding the low-rank term afterwards.
      Profiler::Scope timed(p.profiler, Phase::LoraProducts, 2.0 * double(n) * double(l->r) * double(l->out_features));
      matmul(mat(s.u), false, mat(l->lora_b), true, mut_mat(y), l->scaling);  // s B u
    }
    Profiler::Scope timed(p.profiler, Phase::BaseForward, base_flops);
    matmul(mat(x), false, mat(*p.weight), true, mut_mat(y), 1.0f, 1.0f);  // + W x
    if (p.bias) add_to_rows(*p.bias, y);                                 // + b
    return;
  }
  Profiler::Scope timed(p.profiler, Phase::LoraProducts);  // DoRA: its own formulation, timed as a whole

  // DoRA (PEFT's formulation): y = W x + b + (c − 1) ⊙ W x_d + c ⊙ s B u, with c = m / ‖W + s B A‖_row.
  // Writing z = W x_d + s B u, that is y = W x + b + c ⊙ z − W x_d; without dropout, c ⊙ (W x + s B u) + b.
  s.weight_norm = dora_weight_norm(*p.weight, *l);
  s.dora_z = Tensor(DType::F32, {n, l->out_features});
  const Tensor& xd = drop ? s.x_drop : x;
  matmul(mat(xd), false, mat(*p.weight), true, mut_mat(s.dora_z));                     // W x_d
  std::vector<float> wxd;
  if (drop) wxd.assign(s.dora_z.f32(), s.dora_z.f32() + s.dora_z.numel());
  matmul(mat(s.u), false, mat(l->lora_b), true, mut_mat(s.dora_z), l->scaling, 1.0f);  // z
  if (drop) linear(x, *p.weight, nullptr, y);                                          // W x
  const float* m = l->magnitude.f32();
  const float* norm = s.weight_norm.f32();
  const float* z = s.dora_z.f32();
  float* yv = y.f32();
  const int64_t out = l->out_features;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o) {
      const int64_t i = r * out + o;
      const float c = m[o] / norm[o];
      yv[i] = drop ? yv[i] + c * z[i] - wxd[size_t(i)] : c * z[i];
    }
  if (p.bias) add_to_rows(*p.bias, y);
}

namespace {

// db += Σ_rows dy, for f32 or bf16 dy.
void add_column_sums(const Tensor& dy, float* db) {
  const MatView v = mat(dy);
  for (int64_t r = 0; r < v.rows; ++r)
    for (int64_t j = 0; j < v.cols; ++j) db[j] += v.at(r, j);
}

}  // namespace

void adapted_linear_backward(const LinearParams& p, const Tensor& x, const Tensor& dy_in, const LinearSaved& s,
                             Tensor* dx, bool accumulate_dx) {
  const int64_t n = mat(x).rows;
  // DoRA works on dy element by element: in f32 (the bf16 path hands over bf16 gradients).
  const Tensor dy = p.lora && p.lora->use_dora && dy_in.dtype() != DType::F32 ? dy_in.to(DType::F32) : dy_in;
  const MatView dyv = mat(dy);
  const double base_flops = 2.0 * double(n) * double(mat(*p.weight).rows) * double(mat(*p.weight).cols);
  if (p.bias_grad || p.weight_grad) {
    Profiler::Scope timed(p.profiler, Phase::BaseInputGrad, p.weight_grad ? base_flops : 0.0);
    if (p.bias_grad) add_column_sums(dy, p.bias_grad->f32());  // db += Σ_rows dy
    if (p.weight_grad) matmul(dyv, true, mat(x), false, mut_mat(*p.weight_grad), 1.0f, 1.0f);  // dW += dyᵀ x
  }

  LoraLinear* l = p.lora;
  const float beta_dx = accumulate_dx ? 1.0f : 0.0f;
  if (!l) {
    if (!dx) return;
    Profiler::Scope timed(p.profiler, Phase::BaseInputGrad, base_flops);
    matmul(dyv, false, mat(*p.weight), false, mut_mat(*dx), 1.0f, beta_dx);  // dx = dy W
    return;
  }
  const bool drop = !s.x_drop.empty();
  const int64_t out = l->out_features;

  // g: the gradient reaching the adapter's output s B u — dy itself, or c ⊙ dy under DoRA.
  Tensor g_dora;
  const Tensor* g = &dy;
  std::optional<Profiler::Scope> timed;
  timed.emplace(p.profiler, Phase::LoraProducts, 4.0 * double(n) * double(l->r) * double(out));
  if (l->use_dora) {
    const float* m = l->magnitude.f32();
    const float* norm = s.weight_norm.f32();
    const float* z = s.dora_z.f32();
    float* dm = l->grad_magnitude.f32();
    g_dora = Tensor(DType::F32, {n, out});
    for (int64_t r = 0; r < n; ++r)
      for (int64_t o = 0; o < out; ++o) {
        const int64_t i = r * out + o;
        dm[o] += dy.f32()[i] * z[i] / norm[o];  // ∂y/∂m = z / ‖·‖
        g_dora.f32()[i] = dy.f32()[i] * m[o] / norm[o];
      }
    g = &g_dora;
  }

  // dB += s gᵀ u;  du = s g B (two thin products: one thread each)
  Tensor du(DType::F32, {n, l->r});
  run_side_by_side(4.0 * double(n) * double(out) * double(l->r),
                   [&] { matmul(mat(*g), true, mat(s.u), false, mut_mat(l->grad_b), l->scaling, 1.0f); },
                   [&] { matmul(mat(*g), false, mat(l->lora_b), false, mut_mat(du), l->scaling); });

  // The base path: dx = dy W, except DoRA without dropout, where W x is scaled by c too (dx = g W).
  // DoRA with dropout also has (c − 1) ⊙ W x_d, whose gradient (g − dy) W goes through the mask.
  Tensor extra;
  if (dx && l->use_dora && drop) {
    Tensor cm1(DType::F32, {n, out});
    for (int64_t i = 0; i < n * out; ++i) cm1.f32()[i] = g_dora.f32()[i] - dy.f32()[i];
    extra = Tensor(DType::F32, {n, l->in_features});
    matmul(mat(cm1), false, mat(*p.weight), false, mut_mat(extra));
  }
  timed.reset();
  // The adapter's part of dx first (and dA += duᵀ x_d), then the base product adds its part in its output
  // pass: one pass over dx fewer than adding the low-rank part afterwards.
  {
    Profiler::Scope timed_down(p.profiler, Phase::LoraProducts, 4.0 * double(n) * double(l->r) * double(l->in_features));
    lora_down_backward(*l, x, s, du, dx, extra.empty() ? nullptr : &extra, accumulate_dx);
  }
  if (!dx) return;
  const Tensor& base_grad = (l->use_dora && !drop) ? *g : dy;
  Profiler::Scope timed_base(p.profiler, Phase::BaseInputGrad, base_flops);
  matmul(mat(base_grad), false, mat(*p.weight), false, mut_mat(*dx), 1.0f, 1.0f);
}

void adapted_linear_backward(const LinearParams& p, const Tensor& x, const Tensor& dy, const LinearSaved& saved,
                             Tensor& dx, bool accumulate_dx) {
  adapted_linear_backward(p, x, dy, saved, &dx, accumulate_dx);
}

}  // namespace lora
