#include "adapters/adapter_set.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "adapters/adapter_io.h"
#include "core/error.h"
#include "core/matmul.h"
#include "kernels/small_matmul.h"

namespace lora {

struct AdapterSet::Entry {
  Adapter adapter;
  // DoRA's c = m / ‖W + scale·s·BA‖_row per module, for the scale it was computed at.
  float dora_scale = std::numeric_limits<float>::quiet_NaN();
  std::map<std::string, Tensor> dora_c;
  std::map<std::string, Tensor> b_t;  // Bᵀ per module, made at the first activation
};

namespace {

// c = m / ‖W + scale·BA‖ for every output row (scale includes the adapter's own s), norms in double.
Tensor dora_scale_vector(const Tensor& weight, const LoraFactors& f, float scale) {
  Tensor delta(DType::F32, {f.b.dim(0), f.a.dim(1)});
  matmul(mat(f.b), false, mat(f.a), false, mut_mat(delta), scale);
  const MatView w = mat(weight);
  Tensor c(DType::F32, {w.rows});
#pragma omp parallel for
  for (int64_t o = 0; o < w.rows; ++o) {
    double ss = 0;
    for (int64_t i = 0; i < w.cols; ++i) {
      const double v = double(w.at(o, i)) + delta.f32()[o * w.cols + i];
      ss += v * v;
    }
    c.f32()[o] = float(f.magnitude.f32()[o] / std::sqrt(ss));
  }
  return c;
}

// Bᵀ of an [out, r] B, contiguous.
Tensor transposed(const Tensor& b) {
  const int64_t out = b.dim(0), r = b.dim(1);
  Tensor t(DType::F32, {r, out});
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = 0; k < r; ++k) t.f32()[k * out + o] = b.f32()[o * r + k];
  return t;
}

// Σ k_i B_i A_i as one LoRA: A = [A_1; A_2; ...], B = [k_1 B_1, k_2 B_2, ...], scaling 1.
std::unique_ptr<LoraFactors> stack(const std::vector<AdapterSet::Applied>& terms) {
  int64_t r = 0;
  for (const auto& t : terms) r += t.factors->rank();
  const int64_t in = terms[0].factors->a.dim(1), out = terms[0].factors->b.dim(0);
  auto f = std::make_unique<LoraFactors>(LoraFactors{Tensor(DType::F32, {r, in}), Tensor(DType::F32, {out, r}), Tensor(), 1.0f});
  int64_t at = 0;
  for (const auto& t : terms) {
    const LoraFactors& g = *t.factors;
    const int64_t ri = g.rank();
    std::memcpy(f->a.f32() + at * in, g.a.f32(), g.a.nbytes());
    for (int64_t o = 0; o < out; ++o)
      for (int64_t k = 0; k < ri; ++k) f->b.f32()[o * r + at + k] = t.scale * g.b.f32()[o * ri + k];
    at += ri;
  }
  return f;
}

}  // namespace

AdapterSet::AdapterSet(const Model& base)
    : base_(base), terms_(size_t(base.config.num_hidden_layers)), bias_delta_(size_t(base.config.num_hidden_layers)) {}

AdapterSet::~AdapterSet() = default;

std::string AdapterSet::unique_name(const std::string& wanted) const {
  if (!contains(wanted)) return wanted;
  for (int i = 2;; ++i)
    if (!contains(wanted + "-" + std::to_string(i))) return wanted + "-" + std::to_string(i);
}

std::string AdapterSet::load(const std::string& path, const std::string& name) {
  Adapter a = load_adapter(path, base_);
  if (name.empty() && a.name.empty()) {
    const std::filesystem::path p = std::filesystem::path(path).lexically_normal();
    a.name = (p.has_filename() ? p : p.parent_path()).stem().string();
  }
  return add(std::move(a), name);
}

std::string AdapterSet::add(Adapter adapter, const std::string& name) {
  if (!name.empty() && contains(name)) fail("an adapter named '{}' is already loaded", name);
  check_adapter_fits(adapter, base_);
  auto e = std::make_unique<Entry>();
  e->adapter = as_plain_lora(adapter);  // AdaLoRA's E folded into A: two products per module like any LoRA
  e->adapter.name = name.empty() ? unique_name(e->adapter.name.empty() ? "adapter" : e->adapter.name) : name;
  entries_.push_back(std::move(e));
  return entries_.back()->adapter.name;
}

void AdapterSet::unload(const std::string& name) {
  entry(name);  // throws for an unknown name
  std::vector<Selection> still;
  for (const Selection& s : active_)
    if (s.name != name) still.push_back(s);
  activate(still);
  std::erase_if(entries_, [&](const std::unique_ptr<Entry>& e) { return e->adapter.name == name; });
}

std::vector<std::string> AdapterSet::names() const {
  std::vector<std::string> n;
  for (const auto& e : entries_) n.push_back(e->adapter.name);
  return n;
}

bool AdapterSet::contains(const std::string& name) const {
  for (const auto& e : entries_)
    if (e->adapter.name == name) return true;
  return false;
}

AdapterSet::Entry& AdapterSet::entry(const std::string& name) const {
  for (const auto& e : entries_)
    if (e->adapter.name == name) return *e;
  std::string known;
  for (const auto& e : entries_) known += (known.empty() ? "" : ", ") + e->adapter.name;
  fail("no adapter named '{}' is loaded (loaded: {})", name, known.empty() ? "none" : known);
}

const Adapter& AdapterSet::adapter(const std::string& name) const { return entry(name).adapter; }

void AdapterSet::activate(const std::vector<Selection>& selection) {
  // Validate everything before changing anything: a refused selection leaves the previous one active.
  const Tensor* embedding_weight = nullptr;
  const Tensor* lm_head_weight = nullptr;
  std::string embedding_owner, head_owner;
  for (size_t i = 0; i < selection.size(); ++i) {
    const Selection& s = selection[i];
    const Adapter& a = entry(s.name).adapter;
    if (!std::isfinite(s.scale)) fail("adapter '{}': scale {} is not a number", s.name, s.scale);
    for (size_t j = 0; j < i; ++j)
      if (selection[j].name == s.name) fail("adapter '{}' is selected twice", s.name);
    for (const auto* replacements : {&a.replaced, &a.embedding_layers})
      for (const auto& [module, weight] : *replacements) {
        const bool head = module == "lm_head";
        std::string& owner = head ? head_owner : embedding_owner;
        if (!owner.empty())
          fail("adapters '{}' and '{}' both replace {} (modules_to_save): only one of them can be active", owner, s.name, module);
        if (s.scale != 1.0f)
          fail("adapter '{}' replaces the whole {} (modules_to_save), which cannot be scaled: use it at scale 1", s.name, module);
        owner = s.name;
        (head ? lm_head_weight : embedding_weight) = &weight;
      }
  }

  for (auto& layer : terms_)
    for (auto& site : layer) site.clear();
  for (auto& layer : bias_delta_)
    for (Tensor& b : layer) b = Tensor();
  head_terms_.clear();
  embedding_terms_.clear();
  for (const Selection& s : selection) {
    Entry& e = entry(s.name);
    const Adapter& a = e.adapter;
    if (a.uses_dora() && e.dora_scale != s.scale) {
      e.dora_c.clear();
      for (const auto& [module, f] : a.linears)
        if (!f.magnitude.empty())
          e.dora_c[module] = dora_scale_vector(base_linear_weight(base_, *parse_module_path(module)), f, s.scale * f.scaling);
      e.dora_scale = s.scale;
    }
    for (const auto& [module, f] : a.linears) {
      const ModuleRef m = *parse_module_path(module);
      if (!e.b_t.contains(module)) e.b_t[module] = transposed(f.b);
      Applied t{&f, s.scale * f.scaling, f.magnitude.empty() ? Tensor() : e.dora_c.at(module), e.b_t.at(module)};
      (m.kind == ModuleRef::Kind::Head ? head_terms_ : terms_[size_t(m.layer)][int(m.site)]).push_back(std::move(t));
    }
    if (a.embedding) embedding_terms_.push_back({&*a.embedding, s.scale * a.embedding->scaling, Tensor(), Tensor()});
    for (const auto& [module, bias] : a.biases) {
      const ModuleRef m = *parse_module_path(module);
      const Tensor& b0 = base_linear_bias(base_, m);
      Tensor& delta = bias_delta_[size_t(m.layer)][int(m.site)];
      if (delta.empty()) delta = Tensor(DType::F32, {b0.numel()});
      for (int64_t i = 0; i < b0.numel(); ++i) delta.f32()[i] += s.scale * (bias.f32()[i] - b0.f32()[i]);
    }
  }
  fused_.clear();
  auto fuse = [&](std::vector<Applied>& terms) {
    std::vector<Applied> plain, kept;
    for (Applied& t : terms) (t.dora_c.empty() ? plain : kept).push_back(std::move(t));
    if (plain.size() >= 2) {
      fused_.push_back(stack(plain));
      kept.push_back({fused_.back().get(), 1.0f, Tensor(), plain[0].b_t.empty() ? Tensor() : transposed(fused_.back()->b)});
    } else {
      for (Applied& t : plain) kept.push_back(std::move(t));
    }
    terms = std::move(kept);
  };
  for (auto& layer : terms_)
    for (auto& site : layer) fuse(site);
  fuse(head_terms_);
  fuse(embedding_terms_);
  embedding_weight_ = embedding_weight;
  lm_head_weight_ = lm_head_weight;
  active_ = selection;
}

const std::vector<AdapterSet::Applied>& AdapterSet::applied(int64_t layer, LinearSite site) const {
  return site == LinearSite::Head ? head_terms_ : terms_.at(size_t(layer))[int(site)];
}

const Tensor& AdapterSet::bias_delta(int64_t layer, LinearSite site) const {
  static const Tensor none;
  return site == LinearSite::Head ? none : bias_delta_.at(size_t(layer))[int(site)];
}

Tensor AdapterSet::scratch(int slot, int64_t rows, int64_t cols) const {
  Tensor& buf = scratch_[size_t(slot)];
  if (buf.empty() || buf.numel() < rows * cols) buf = Tensor(DType::F32, {rows * cols});
  return Tensor(DType::F32, {rows, cols}, buf.data(), nullptr);
}

void AdapterSet::add_linear(int64_t layer, LinearSite site, const Tensor& x, Tensor& y) const {
  const std::vector<Applied>& terms = applied(layer, site);
  const int64_t n = mat(x).rows;
  for (const Applied& t : terms) {
    const LoraFactors& f = *t.factors;
    Tensor u = scratch(0, n, f.rank());
    small_matmul(mat(x), false, mat(f.a), true, mut_mat(u));  // u = A x
    if (t.dora_c.empty()) {
      small_matmul(mat(u), false, mat(t.b_t), false, mut_mat(y), t.scale, 1.0f);  // y += scale · B u
      continue;
    }
    // DoRA's change to the base output: (c − 1) ⊙ W x + c ⊙ scale · B u.
    const ModuleRef m = site == LinearSite::Head ? ModuleRef{ModuleRef::Kind::Head, -1, LinearSite::Head}
                                                 : ModuleRef{ModuleRef::Kind::Linear, layer, site};
    const int64_t out = f.b.dim(0);
    Tensor wx = scratch(1, n, out), z = scratch(2, n, out);
    matmul(mat(x), false, mat(base_linear_weight(base_, m)), true, mut_mat(wx));
    small_matmul(mat(u), false, mat(t.b_t), false, mut_mat(z), t.scale);
    MutMatView yv = mut_mat(y);
    const float* c = t.dora_c.f32();
    for (int64_t r = 0; r < n; ++r)
      for (int64_t o = 0; o < out; ++o)
        yv.data[r * yv.stride + o] += (c[o] - 1.0f) * wx.f32()[r * out + o] + c[o] * z.f32()[r * out + o];
  }
  if (site != LinearSite::Head) {
    const Tensor& b = bias_delta_[size_t(layer)][int(site)];
    if (!b.empty()) add_to_rows(b, y);
  }
}

void AdapterSet::add_embedding(const int32_t* tokens, int64_t n, Tensor& x) const {
  for (const Applied& t : embedding_terms_) {
    const LoraFactors& f = *t.factors;  // A [r, vocab], B [hidden, r]
    const int64_t r = f.rank(), vocab = f.a.dim(1);
    Tensor u = scratch(0, n, r);  // u[t] = A[:, token t]
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < r; ++k) u.f32()[i * r + k] = f.a.f32()[k * vocab + tokens[i]];
    matmul(mat(u), false, mat(f.b), true, mut_mat(x), t.scale, 1.0f);  // x += scale · B u
  }
}

}  // namespace lora
