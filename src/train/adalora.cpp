#include "train/adalora.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/matmul.h"

namespace lora {

BudgetStep adalora_budget(const AdaLoraOptions& o, int64_t b0, int64_t bT, int64_t step) {
  const int64_t T = o.total_step;
  if (step <= o.tinit) return {b0, false};
  if (step > T - o.tfinal) return {bT, true};
  const double progress = double(step - o.tinit) / double(T - o.tfinal - o.tinit);
  const double left = 1.0 - progress;
  // PEFT truncates toward zero with int(); the value is never negative.
  return {int64_t(double(b0 - bT) * left * left * left + double(bT)), step % o.delta_t == 0};
}

namespace {

std::vector<LoraLinear*> adalora_layers(TrainableModel& model) {
  std::vector<LoraLinear*> out;
  for (LoraLinear* l : model.lora_layers())
    if (l->adalora()) out.push_back(l);
  return out;
}

// AdaLoRA's matrices (see RankAllocator::Matrix): consecutive parts of one fused module go together.
std::vector<std::vector<LoraLinear*>> adalora_modules(TrainableModel& model) {
  std::vector<std::vector<LoraLinear*>> out;
  for (LoraLinear* l : adalora_layers(model)) {
    if (!out.empty() && !l->fused_path.empty() && out.back()[0]->fused_path == l->fused_path)
      out.back().push_back(l);
    else
      out.push_back({l});
  }
  return out;
}

// ‖G − I‖_F with G = X Xᵀ (rows) or Xᵀ X (columns, X the parts xs stacked by rows: G = Σ X_pᵀ X_p); adds
// c · ∂‖G − I‖_F/∂X = c · 2 (G − I) X / ‖G − I‖ (rows; X_p (G − I) for columns) into each part's grad.
double orthogonality_defect(const std::vector<LoraLinear*>& parts, bool rows, float c) {
  const Tensor& x0 = rows ? parts[0]->lora_a : parts[0]->lora_b;
  const int64_t r = rows ? x0.dim(0) : x0.dim(1);
  Tensor g(DType::F32, {r, r});
  if (rows) {
    matmul(mat(x0), false, mat(x0), true, mut_mat(g));  // X Xᵀ
  } else {
    for (size_t p = 0; p < parts.size(); ++p)  // Σ X_pᵀ X_p
      matmul(mat(parts[p]->lora_b), true, mat(parts[p]->lora_b), false, mut_mat(g), 1.0f, p == 0 ? 0.0f : 1.0f);
  }
  double ss = 0;
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < r; ++j) {
      float& v = g.f32()[i * r + j];
      if (i == j) v -= 1.0f;
      ss += double(v) * v;
    }
  const double norm = std::sqrt(ss);
  if (norm > 0) {
    // the factor goes into the small r×r matrix: a matmul's scalars are part of its cached primitive
    const float k = float(2.0 * c / norm);
    for (int64_t i = 0; i < r * r; ++i) g.f32()[i] *= k;
    if (rows)
      matmul(mat(g), false, mat(x0), false, mut_mat(parts[0]->grad_a), 1.0f, 1.0f);  // k (G − I) A
    else
      for (LoraLinear* p : parts) matmul(mat(p->lora_b), false, mat(g), false, mut_mat(p->grad_b), 1.0f, 1.0f);  // k B_p (G − I)
  }
  return norm;
}

double mean_of(const float* v, int64_t n, int64_t stride) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += v[i * stride];
  return s / double(n);
}

}  // namespace

double add_orthogonal_regularization(TrainableModel& model) {
  const AdaLoraOptions* o = model.adalora_options();
  if (!o) fail("the orthogonal regularizer is AdaLoRA's; this model is not an AdaLoRA model");
  const std::vector<std::vector<LoraLinear*>> modules = adalora_modules(model);
  if (modules.empty()) return 0.0;
  const double n_matrices = 2.0 * double(modules.size());  // every A and every B
  const float c = float(o->orth_reg_weight / n_matrices);
  double sum = 0;
  for (const std::vector<LoraLinear*>& parts : modules) {
    sum += orthogonality_defect(parts, true, c);
    sum += orthogonality_defect(parts, false, c);
  }
  return o->orth_reg_weight * sum / n_matrices;
}

RankAllocator::RankAllocator(TrainableModel& model) : model_(model) {
  const AdaLoraOptions* o = model.adalora_options();
  if (!o) fail("rank allocation is AdaLoRA's; this model is not an AdaLoRA model");
  options_ = *o;
  options_.validate_schedule();
  for (const std::vector<LoraLinear*>& parts : adalora_modules(model)) {
    LoraLinear* l = parts[0];
    Matrix m;
    m.parts = parts;
    m.layer = l;
    m.ipt_a = Tensor(DType::F32, l->lora_a.shape());
    m.unc_a = Tensor(DType::F32, l->lora_a.shape());
    for (LoraLinear* p : parts) {
      m.ipt_b.emplace_back(DType::F32, p->lora_b.shape());
      m.unc_b.emplace_back(DType::F32, p->lora_b.shape());
    }
    m.ipt_e = Tensor(DType::F32, l->lora_e.shape());
    m.unc_e = Tensor(DType::F32, l->lora_e.shape());
    m.kept.assign(size_t(l->r), true);
    b0_ += l->r;
    matrices_.push_back(std::move(m));
  }
  if (matrices_.empty()) fail("AdaLoRA: no module is adapted (check target_modules)");
  bT_ = options_.target_r * int64_t(matrices_.size());
}

void RankAllocator::update_importance() {
  const float b1 = float(options_.beta1), b2 = float(options_.beta2);
  auto smooth = [&](const Tensor& w, const Tensor& g, Tensor& ipt, Tensor& unc) {
    const float *wv = w.f32(), *gv = g.f32();
    float *iv = ipt.f32(), *uv = unc.f32();
    for (int64_t i = 0; i < w.numel(); ++i) {
      const float sensitivity = std::fabs(wv[i] * gv[i]);
      iv[i] = b1 * iv[i] + (1 - b1) * sensitivity;
      uv[i] = b2 * uv[i] + (1 - b2) * std::fabs(sensitivity - iv[i]);
    }
  };
  for (Matrix& m : matrices_) {
    smooth(m.layer->lora_a, m.layer->grad_a, m.ipt_a, m.unc_a);
    for (size_t p = 0; p < m.parts.size(); ++p) smooth(m.parts[p]->lora_b, m.parts[p]->grad_b, m.ipt_b[p], m.unc_b[p]);
    smooth(m.layer->lora_e, m.layer->grad_e, m.ipt_e, m.unc_e);
  }
}

std::string RankAllocator::Matrix::name() const { return layer->fused_path.empty() ? layer->path : layer->fused_path; }

std::vector<double> RankAllocator::triplet_scores(size_t index) const {
  const Matrix& m = matrices_.at(index);
  const int64_t r = m.layer->r, in = m.layer->in_features;
  // entry scores s = Ī · Ū, then means along A's rows and B's columns (B: every part's rows)
  std::vector<float> sa(static_cast<size_t>(r * in)), sb;
  for (int64_t i = 0; i < r * in; ++i) sa[size_t(i)] = m.ipt_a.f32()[i] * m.unc_a.f32()[i];
  for (size_t p = 0; p < m.parts.size(); ++p)
    for (int64_t i = 0; i < m.ipt_b[p].numel(); ++i) sb.push_back(m.ipt_b[p].f32()[i] * m.unc_b[p].f32()[i]);
  const int64_t out = int64_t(sb.size()) / std::max<int64_t>(r, 1);
  std::vector<double> s(static_cast<size_t>(r));
  for (int64_t k = 0; k < r; ++k)
    s[size_t(k)] = double(m.ipt_e.f32()[k] * m.unc_e.f32()[k]) + mean_of(sa.data() + k * in, in, 1) +
                   mean_of(sb.data() + k, out, r);
  return s;
}

void RankAllocator::mask_to_budget(int64_t budget) {
  std::vector<std::vector<double>> scores;
  std::vector<double> all;
  for (size_t i = 0; i < matrices_.size(); ++i) {
    scores.push_back(triplet_scores(i));
    all.insert(all.end(), scores.back().begin(), scores.back().end());
  }
  const int64_t n_masked = b0_ - budget;
  if (n_masked <= 0) {
    for (Matrix& m : matrices_) m.kept.assign(m.kept.size(), true);
    return;
  }
  // The n_masked-th smallest score; everything at or below it goes (as torch.kthvalue + "<=").
  std::nth_element(all.begin(), all.begin() + (n_masked - 1), all.end());
  const double threshold = all[size_t(n_masked - 1)];
  for (size_t i = 0; i < matrices_.size(); ++i)
    for (size_t k = 0; k < scores[i].size(); ++k) matrices_[i].kept[k] = !(scores[i][k] <= threshold);
  apply_mask();
}

void RankAllocator::apply_mask() {
  for (Matrix& m : matrices_)
    for (size_t k = 0; k < m.kept.size(); ++k)
      if (!m.kept[k]) m.layer->lora_e.f32()[k] = 0.0f;
}

int64_t RankAllocator::update_and_allocate(int64_t step) {
  const int64_t final_step = options_.total_step - options_.tfinal;
  if (step > final_step) {  // the budget is final: keep the pruned triplets at zero
    apply_mask();
    return bT_;
  }
  const BudgetStep b = adalora_budget(options_, b0_, bT_, step);
  if (step < final_step) {
    update_importance();
    if (b.mask) mask_to_budget(b.budget);
    return b.budget;
  }
  // step == final_step: the last allocation, with the scores as they stand, then the mask is fixed
  mask_to_budget(b.budget);
  finalized_ = true;
  for (Matrix& m : matrices_) {
    for (Tensor* t : {&m.ipt_a, &m.unc_a, &m.ipt_e, &m.unc_e}) std::fill_n(t->f32(), t->numel(), 0.0f);
    for (std::vector<Tensor>* parts : {&m.ipt_b, &m.unc_b})
      for (Tensor& t : *parts) std::fill_n(t.f32(), t.numel(), 0.0f);
  }
  return b.budget;
}

std::map<std::string, std::vector<bool>> RankAllocator::rank_pattern() const {
  std::map<std::string, std::vector<bool>> out;
  for (const Matrix& m : matrices_) out[m.name() + ".lora_E"] = m.kept;
  return out;
}

std::vector<std::pair<std::string, int64_t>> RankAllocator::ranks() const {
  std::vector<std::pair<std::string, int64_t>> out;
  for (const Matrix& m : matrices_) out.emplace_back(m.name(), std::count(m.kept.begin(), m.kept.end(), true));
  return out;
}

std::map<std::string, Tensor> RankAllocator::state() const {
  std::map<std::string, Tensor> s;
  for (const Matrix& m : matrices_) {
    const std::string p = "adalora." + m.name() + ".";
    s[p + "ipt_A"] = m.ipt_a;
    s[p + "unc_A"] = m.unc_a;
    s[p + "ipt_B"] = Tensor::concat_rows(m.ipt_b);  // (a fused module's parts stacked, as its B)
    s[p + "unc_B"] = Tensor::concat_rows(m.unc_b);
    s[p + "ipt_E"] = m.ipt_e;
    s[p + "unc_E"] = m.unc_e;
    Tensor kept(DType::F32, {int64_t(m.kept.size())});
    for (size_t k = 0; k < m.kept.size(); ++k) kept.f32()[k] = m.kept[k] ? 1.0f : 0.0f;
    s[p + "kept"] = kept;
  }
  Tensor fin(DType::F32, {1});
  fin.f32()[0] = finalized_ ? 1.0f : 0.0f;
  s["adalora.finalized"] = fin;
  return s;
}

void RankAllocator::load_state(const std::map<std::string, Tensor>& state, const std::string& path) {
  auto take = [&](const std::string& name, Tensor& into) {
    const auto it = state.find(name);
    if (it == state.end()) fail_format(path, "AdaLoRA state '{}' is missing: the checkpoint is not of this run", name);
    if (it->second.shape() != into.shape())
      fail_format(path, "AdaLoRA state '{}' has shape {}, expected {}", name, it->second.shape_str(), into.shape_str());
    const Tensor v = it->second.to(DType::F32);
    std::copy_n(v.f32(), v.numel(), into.f32());
  };
  for (Matrix& m : matrices_) {
    const std::string p = "adalora." + m.name() + ".";
    take(p + "ipt_A", m.ipt_a);
    take(p + "unc_A", m.unc_a);
    for (auto [name, parts] : {std::pair{"ipt_B", &m.ipt_b}, std::pair{"unc_B", &m.unc_b}}) {
      Tensor stacked = Tensor::concat_rows(*parts);  // (the shape to expect; filled by take)
      take(p + name, stacked);
      for (int64_t row = 0; Tensor& t : *parts) {
        std::copy_n(stacked.f32() + row * t.dim(1), t.numel(), t.f32());
        row += t.dim(0);
      }
    }
    take(p + "ipt_E", m.ipt_e);
    take(p + "unc_E", m.unc_e);
    Tensor kept(DType::F32, {int64_t(m.kept.size())});
    take(p + "kept", kept);
    for (size_t k = 0; k < m.kept.size(); ++k) m.kept[k] = kept.f32()[k] != 0.0f;
  }
  Tensor fin(DType::F32, {1});
  take("adalora.finalized", fin);
  finalized_ = fin.f32()[0] != 0.0f;
}

}  // namespace lora
