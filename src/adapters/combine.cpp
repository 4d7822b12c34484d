#include "adapters/combine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "core/error.h"
#include "core/linalg.h"
#include "core/matmul.h"

namespace lora {

namespace {

struct Part {
  const LoraFactors* f;
  float weight;  // w_i · s_i: the adapter's weight with its own scaling folded in
};

std::string label(const Adapter& a) { return !a.source.empty() ? a.source : !a.name.empty() ? a.name : "an adapter"; }

LoraFactors combine_cat(const std::vector<Part>& parts) {
  int64_t r = 0;
  for (const Part& p : parts) r += p.f->rank();
  const int64_t in = parts[0].f->a.dim(1), out = parts[0].f->b.dim(0);
  LoraFactors c{Tensor(DType::F32, {r, in}), Tensor(DType::F32, {out, r}), Tensor(), 1.0f};
  int64_t at = 0;
  for (const Part& p : parts) {
    const int64_t ri = p.f->rank();
    for (int64_t i = 0; i < ri * in; ++i) c.a.f32()[at * in + i] = p.weight * p.f->a.f32()[i];
    for (int64_t o = 0; o < out; ++o)
      std::memcpy(c.b.f32() + o * r + at, p.f->b.f32() + o * ri, size_t(ri) * sizeof(float));
    at += ri;
  }
  return c;
}

LoraFactors combine_linear(const std::vector<Part>& parts, const std::string& module) {
  const int64_t r = parts[0].f->rank();
  LoraFactors c{Tensor(DType::F32, parts[0].f->a.shape()), Tensor(DType::F32, parts[0].f->b.shape()), Tensor(), 1.0f};
  for (const Part& p : parts) {
    if (p.f->rank() != r)
      fail("combine linear: {} has ranks {} and {}; \"linear\" needs equal ranks (use cat or svd)", module, r, p.f->rank());
    if (p.weight < 0)
      fail("combine linear: {} would take the square root of a negative weight × scaling ({}); use cat or svd", module, p.weight);
    const float k = std::sqrt(p.weight);
    for (int64_t i = 0; i < c.a.numel(); ++i) c.a.f32()[i] += k * p.f->a.f32()[i];
    for (int64_t i = 0; i < c.b.numel(); ++i) c.b.f32()[i] += k * p.f->b.f32()[i];
  }
  return c;
}

// Σ w_i B_i A_i = B_cat A_cat has rank at most R = Σ r_i, so its SVD comes from two thin ones without
// forming the [out, in] matrix: B_cat = U_b S_b V_bᵀ, then S_b V_bᵀ A_cat = U' S Vᵀ gives
// Σ w_i B_i A_i = (U_b U') S Vᵀ. Truncated to `rank`: B = (U_b U')[:, :k] S[:k], A = Vᵀ[:k, :].
LoraFactors combine_svd(const std::vector<Part>& parts, int64_t rank) {
  const LoraFactors cat = combine_cat(parts);  // B_cat A_cat with the weights folded into A
  const Svd sb = svd(cat.b);                   // [out, k1], [k1], [k1, R]
  const int64_t k1 = sb.s.numel(), in = cat.a.dim(1), out = cat.b.dim(0);
  Tensor m(DType::F32, {k1, in});  // S_b V_bᵀ A_cat
  Tensor svt = sb.vt.clone();
  for (int64_t i = 0; i < k1; ++i)
    for (int64_t j = 0; j < svt.dim(1); ++j) svt.f32()[i * svt.dim(1) + j] *= sb.s.f32()[i];
  matmul(mat(svt), false, mat(cat.a), false, mut_mat(m));
  const Svd sm = svd(m);  // [k1, k2], [k2], [k2, in]
  const int64_t k = std::min(rank, sm.s.numel());
  Tensor u(DType::F32, {out, sm.u.dim(1)});
  matmul(mat(sb.u), false, mat(sm.u), false, mut_mat(u));
  LoraFactors c{Tensor(DType::F32, {k, in}), Tensor(DType::F32, {out, k}), Tensor(), 1.0f};
  std::memcpy(c.a.f32(), sm.vt.f32(), size_t(k * in) * sizeof(float));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t j = 0; j < k; ++j) c.b.f32()[o * k + j] = u.f32()[o * u.dim(1) + j] * sm.s.f32()[j];
  return c;
}

bool same_values(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

}  // namespace

CombineMethod combine_method_from_name(const std::string& name) {
  if (name == "cat") return CombineMethod::Cat;
  if (name == "linear") return CombineMethod::Linear;
  if (name == "svd") return CombineMethod::Svd;
  fail("unknown combination method '{}' (cat, linear, svd)", name);
}

Adapter combine_adapters(const std::vector<WeightedAdapter>& inputs, CombineMethod method, int64_t svd_rank) {
  if (inputs.empty()) fail("combine: no adapters given");
  if (svd_rank < 0) fail("combine: the SVD rank must be positive, got {}", svd_rank);
  Adapter out;
  int64_t max_rank = 0;
  std::set<std::string> modules;
  std::vector<Adapter> plain;  // AdaLoRA's E folded into A
  plain.reserve(inputs.size());
  // (Phi-3: combined as the fused modules PEFT combines, so that an SVD sees qkv_proj's whole update)
  for (const WeightedAdapter& in : inputs) plain.push_back(join_fused_modules(as_plain_lora(*in.adapter)));
  for (size_t i = 0; i < inputs.size(); ++i) {
    const WeightedAdapter& in = inputs[i];
    const Adapter& a = plain[i];
    if (!std::isfinite(in.weight)) fail("combine: {} has weight {}", label(a), in.weight);
    if (a.uses_dora()) fail("combine: {} is a DoRA adapter; its magnitudes cannot be combined (merge it into the model instead)", label(a));
    if (!a.biases.empty()) fail("combine: {} has trained biases, which cannot be combined (merge it into the model instead)", label(a));
    if (!a.replaced.empty())
      fail("combine: {} replaces {} (modules_to_save), which cannot be combined (merge it into the model instead)", label(a),
           a.replaced.begin()->first);
    for (const auto& [module, t] : a.embedding_layers) {  // PEFT's copies of the base: all inputs must agree
      auto [it, fresh] = out.embedding_layers.emplace(module, t);
      if (!fresh && !same_values(it->second, t))
        fail("combine: the adapters carry different copies of the base {} (trained on different base models?)", module);
    }
    for (const auto& [module, f] : a.linears) modules.insert(module), max_rank = std::max(max_rank, f.rank());
    if (a.embedding) modules.insert("model.embed_tokens"), max_rank = std::max(max_rank, a.embedding->rank());
  }
  const int64_t target = svd_rank > 0 ? svd_rank : max_rank;

  for (const std::string& module : modules) {
    std::vector<Part> parts;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const WeightedAdapter& in = inputs[i];
      const Adapter& a = plain[i];
      const LoraFactors* f = module == "model.embed_tokens" ? (a.embedding ? &*a.embedding : nullptr)
                                                            : (a.linears.count(module) ? &a.linears.at(module) : nullptr);
      if (!f) continue;
      if (!parts.empty() && (f->a.dim(1) != parts[0].f->a.dim(1) || f->b.dim(0) != parts[0].f->b.dim(0)))
        fail("combine: {} has shape [{}, {}] in {} but [{}, {}] in another adapter (different base models?)", module,
             f->b.dim(0), f->a.dim(1), label(a), parts[0].f->b.dim(0), parts[0].f->a.dim(1));
      parts.push_back({f, in.weight * f->scaling});
    }
    LoraFactors c = method == CombineMethod::Cat      ? combine_cat(parts)
                    : method == CombineMethod::Linear ? combine_linear(parts, module)
                                                      : combine_svd(parts, target);
    if (module == "model.embed_tokens") out.embedding = std::move(c);
    else out.linears[module] = std::move(c);
  }

  const Adapter& first = plain[0];
  out.stored_dtype = first.stored_dtype;
  LoraConfig base = first.config;
  base.bias = "none";
  out.config = describe_factors(out, base);
  return out;
}

}  // namespace lora
