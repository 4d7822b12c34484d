#include "adapters/lora_linear.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/matmul.h"

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

Tensor LoraLinear::delta_weight() const {
  Tensor delta(DType::F32, {out_features, in_features});
  matmul(mat(lora_b), false, mat(lora_a), false, mut_mat(delta), scaling);
  return delta;
}

namespace {

// ‖W + s B A‖ of every output row, in double.
Tensor dora_weight_norm(const Tensor& weight, const LoraLinear& l) {
  const Tensor delta = l.delta_weight();
  Tensor norm(DType::F32, {l.out_features});
  const MatView w = mat(weight);
#pragma omp parallel for
  for (int64_t o = 0; o < l.out_features; ++o) {
    double ss = 0;
    for (int64_t i = 0; i < l.in_features; ++i) {
      const double v = double(w.at(o, i)) + delta.f32()[o * l.in_features + i];
      ss += v * v;
    }
    norm.f32()[o] = float(std::sqrt(ss));
  }
  return norm;
}

void add_bias(const Tensor& bias, Tensor& y) {
  MutMatView yv = mut_mat(y);
  const float* b = bias.f32();
  for (int64_t r = 0; r < yv.rows; ++r)
    for (int64_t j = 0; j < yv.cols; ++j) yv.data[r * yv.stride + j] += b[j];
}

}  // namespace

void adapted_linear_forward(const LinearParams& p, const Tensor& x, Tensor& y, LinearSaved* saved,
                            std::mt19937_64* rng) {
  const int64_t n = mat(x).rows;
  LoraLinear* l = p.lora;
  if (!l) {  // y = W x + b
    linear(x, *p.weight, p.bias, y);
    return;
  }
  LinearSaved local;
  LinearSaved& s = saved ? *saved : local;

  // x_d = dropout(x): kept entries scaled by 1/(1-p) so the expectation is unchanged.
  const bool drop = l->dropout > 0.0f && rng != nullptr;
  const Tensor* xd = &x;
  if (drop) {
    s.x_drop = Tensor(DType::F32, {n, l->in_features});
    s.keep = Tensor(DType::U8, {n, l->in_features});
    std::bernoulli_distribution keep(1.0 - l->dropout);
    const float scale = 1.0f / (1.0f - l->dropout);
    const float* xs = x.f32();
    float* d = s.x_drop.f32();
    uint8_t* k = s.keep.data_as<uint8_t>();
    for (int64_t i = 0; i < n * l->in_features; ++i) {
      k[i] = keep(*rng) ? 1 : 0;
      d[i] = k[i] ? xs[i] * scale : 0.0f;
    }
    xd = &s.x_drop;
  } else {
    s.x_drop = Tensor();
    s.keep = Tensor();
  }

  // u = A x_d
  s.u = Tensor(DType::F32, {n, l->r});
  matmul(mat(*xd), false, mat(l->lora_a), true, mut_mat(s.u));

  if (!l->use_dora) {
    linear(x, *p.weight, p.bias, y);                                          // W x + b
    matmul(mat(s.u), false, mat(l->lora_b), true, mut_mat(y), l->scaling, 1.0f);  // + s B u
    return;
  }

  // DoRA: y = W x + b + (c − 1) ⊙ W x_d + c ⊙ s B u, with c = m / ‖W + s B A‖_row. Without dropout
  // x_d = x and this is c ⊙ (W x + s B u) + b.
  s.weight_norm = dora_weight_norm(*p.weight, *l);
  s.dora_z = Tensor(DType::F32, {n, l->out_features});
  matmul(mat(*xd), false, mat(*p.weight), true, mut_mat(s.dora_z));                   // W x_d
  if (drop) linear(x, *p.weight, nullptr, y);                                          // W x
  matmul(mat(s.u), false, mat(l->lora_b), true, mut_mat(s.dora_z), l->scaling, 1.0f);  // z = W x_d + s B u
  const float* m = l->magnitude.f32();
  const float* norm = s.weight_norm.f32();
  const float* z = s.dora_z.f32();
  float* yv = y.f32();
  const int64_t out = l->out_features;
  // With dropout: y = W x + c ⊙ z − W x_d  (the W x_d inside z has coefficient c, outside it −1).
  std::vector<float> wxd;
  if (drop) {
    wxd.resize(size_t(n * out));
    matmul(mat(*xd), false, mat(*p.weight), true, MutMatView{wxd.data(), n, out, out});
  }
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o) {
      const float c = m[o] / norm[o];
      const int64_t i = r * out + o;
      yv[i] = drop ? yv[i] + c * z[i] - wxd[i] : c * z[i];
    }
  if (p.bias) add_bias(*p.bias, y);
}

void adapted_linear_backward(const LinearParams& p, const Tensor& x, const Tensor& dy, const LinearSaved& s,
                             Tensor& dx, bool accumulate_dx) {
  const int64_t n = mat(x).rows;
  const float beta_dx = accumulate_dx ? 1.0f : 0.0f;
  const MatView dyv = mat(dy);

  if (p.bias_grad) {  // db += Σ_rows dy
    float* db = p.bias_grad->f32();
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < dyv.cols; ++j) db[j] += dy.f32()[r * dyv.cols + j];
  }
  if (p.weight_grad) matmul(dyv, true, mat(x), false, mut_mat(*p.weight_grad), 1.0f, 1.0f);  // dW += dyᵀ x

  LoraLinear* l = p.lora;
  if (!l) {
    matmul(dyv, false, mat(*p.weight), false, mut_mat(dx), 1.0f, beta_dx);  // dx = dy W
    return;
  }
  const bool drop = !s.x_drop.empty();
  const Tensor& xd = drop ? s.x_drop : x;
  const int64_t out = l->out_features;

  // g is the gradient reaching the adapter's output s·B·u: dy itself, or c ⊙ dy under DoRA.
  Tensor g_dora;
  const Tensor* g = &dy;
  if (l->use_dora) {
    const float* m = l->magnitude.f32();
    const float* norm = s.weight_norm.f32();
    const float* z = s.dora_z.f32();
    float* dm = l->grad_magnitude.f32();
    g_dora = Tensor(DType::F32, {n, out});
    for (int64_t r = 0; r < n; ++r)
      for (int64_t o = 0; o < out; ++o) {
        const int64_t i = r * out + o;
        dm[o] += dy.f32()[i] * z[i] / norm[o];  // dm = Σ dy ⊙ z / ‖·‖
        g_dora.f32()[i] = dy.f32()[i] * m[o] / norm[o];
      }
    g = &g_dora;
  }

  // dB += s gᵀ u ;  h = Bᵀ g (per row: [N, r]) ;  dA += s hᵀ x_d
  matmul(mat(*g), true, mat(s.u), false, mut_mat(l->grad_b), l->scaling, 1.0f);
  Tensor h(DType::F32, {n, l->r});
  matmul(mat(*g), false, mat(l->lora_b), false, mut_mat(h));
  matmul(mat(h), true, mat(xd), false, mut_mat(l->grad_a), l->scaling, 1.0f);

  if (!drop) {
    // dx = g' W + s h A, where g' = dy (LoRA) or c ⊙ dy (DoRA: W x is scaled by c too)
    matmul(mat(*g), false, mat(*p.weight), false, mut_mat(dx), 1.0f, beta_dx);
    matmul(mat(h), false, mat(l->lora_a), false, mut_mat(dx), l->scaling, 1.0f);
    return;
  }
  // With dropout the adapter path sees x_d = mask ⊙ x / (1-p): its gradient goes back through the mask.
  //   LoRA: dx = dy W + mask' ⊙ (s h A);  DoRA: dx = dy W + mask' ⊙ ((c − 1) ⊙ dy W + s h A)
  Tensor dxd(DType::F32, {n, l->in_features});
  matmul(mat(h), false, mat(l->lora_a), false, mut_mat(dxd), l->scaling);
  if (l->use_dora) {
    Tensor cm1(DType::F32, {n, out});
    for (int64_t i = 0; i < n * out; ++i) cm1.f32()[i] = g_dora.f32()[i] - dy.f32()[i];
    matmul(mat(cm1), false, mat(*p.weight), false, mut_mat(dxd), 1.0f, 1.0f);
  }
  matmul(dyv, false, mat(*p.weight), false, mut_mat(dx), 1.0f, beta_dx);
  const float scale = 1.0f / (1.0f - l->dropout);
  const uint8_t* k = s.keep.data_as<uint8_t>();
  float* dxv = dx.f32();
  for (int64_t i = 0; i < n * l->in_features; ++i)
    if (k[i]) dxv[i] += dxd.f32()[i] * scale;
}

}  // namespace lora
