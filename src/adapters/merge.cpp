#include "adapters/merge.h"

#include <cmath>

#include "core/matmul.h"
#include "model/quantize_model.h"

namespace lora {

namespace {

Tensor merge_linear(const Tensor& weight, const LoraLinear& l) {
  Tensor w = weight.to(DType::F32);
  const Tensor delta = l.delta_weight();
  for (int64_t i = 0; i < w.numel(); ++i) w.f32()[i] += delta.f32()[i];
  if (l.use_dora)
    for (int64_t o = 0; o < l.out_features; ++o) {
      float* row = w.f32() + o * l.in_features;
      double ss = 0;
      for (int64_t i = 0; i < l.in_features; ++i) ss += double(row[i]) * row[i];
      const float c = l.magnitude.f32()[o] / float(std::sqrt(ss));
      for (int64_t i = 0; i < l.in_features; ++i) row[i] *= c;
    }
  return w;
}

}  // namespace

Model merged_model(const TrainableModel& model) {
  const Model& base = model.base();
  Model m;
  m.config = base.config;
  m.tokenizer = base.tokenizer;
  m.source_path = base.source_path;
  m.source_format = base.source_format;
  m.weights = model.weights();  // trained copies (biases, modules_to_save, full/freeze weights) and base views
  for (int64_t l = 0; l < base.config.num_hidden_layers; ++l) {
    LayerWeights& w = m.weights.layers[size_t(l)];
    Tensor* targets[kNumProj] = {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down};
    Tensor* biases[kNumProj] = {&w.bq, &w.bk, &w.bv, nullptr, nullptr, nullptr, nullptr};
    for (int p = 0; p < kNumProj; ++p) {
      const LinearSlot& s = model.slot(l, Proj(p));
      *targets[p] = s.lora ? merge_linear(s.weight, *s.lora) : dequantize_weight(s.weight);
      if (biases[p]) *biases[p] = s.bias;
    }
  }
  TrainableModel& mut = const_cast<TrainableModel&>(model);
  const bool tied = m.weights.lm_head.data() == m.weights.tok_embeddings.data();
  if (const EmbeddingLora* e = mut.embedding_lora()) {
    // E' = E + s·(B·A)ᵀ: row v gains s·B·A[:, v] (over Gemma's embedding scale, which multiplies E' and not the LoRA)
    Tensor table = m.weights.tok_embeddings.to(DType::F32);
    Tensor ba(DType::F32, {e->lora_embedding_b.dim(0), e->lora_embedding_a.dim(1)});  // [hidden, vocab]
    matmul(mat(e->lora_embedding_b), false, mat(e->lora_embedding_a), false, mut_mat(ba),
           e->scaling / m.config.embedding_scale(false));
    const int64_t hidden = ba.dim(0), vocab = ba.dim(1);
    for (int64_t v = 0; v < vocab; ++v)
      for (int64_t h = 0; h < hidden; ++h) table.f32()[v * hidden + h] += ba.f32()[h * vocab + v];
    m.weights.tok_embeddings = table;
    // A tied head keeps the base embedding: PEFT's embedding LoRA changes the input side only.
  }
  if (const LoraLinear* head = mut.lm_head_lora()) m.weights.lm_head = merge_linear(m.weights.lm_head, *head);
  if (tied && !mut.embedding_lora() && !mut.lm_head_lora()) m.weights.lm_head = m.weights.tok_embeddings;
  return m;
}

Model merged_model(const AdapterSet& set) {
  const Model& base = set.base();
  const ModelConfig& c = base.config;
  Model m;
  m.config = c;
  m.tokenizer = base.tokenizer;
  m.source_path = base.source_path;
  m.source_format = base.source_format;
  m.weights = base.weights;  // views; the tensors adapters change are replaced by f32 copies below
  if (const Tensor* e = set.embedding_weight()) m.weights.tok_embeddings = *e;
  if (const Tensor* h = set.lm_head_weight()) m.weights.lm_head = *h;

  // W' = W + Σ terms, each term relative to the base W: LoRA adds scale·BA, DoRA (c−1)⊙W + c⊙scale·BA.
  // W' = W + Σ terms, each relative to the base W: LoRA adds scale·BA, DoRA (c − 1) ⊙ W + c ⊙ scale·BA.
  auto fold = [](const Tensor& w0, const std::vector<AdapterSet::Applied>& terms) {
    const Tensor base_w = w0.dtype() == DType::F32 ? w0 : w0.to(DType::F32);
    Tensor w = base_w.clone();
    const int64_t out = w.dim(0), in = w.dim(1);
    Tensor delta(DType::F32, {out, in});
    for (const AdapterSet::Applied& t : terms) {
      matmul(mat(t.factors->b), false, mat(t.factors->a), false, mut_mat(delta), t.scale);  // scale·BA
      const bool dora = !t.dora_c.empty();
#pragma omp parallel for
      for (int64_t o = 0; o < out; ++o) {
        const float c = dora ? t.dora_c.f32()[o] : 1.0f;
        for (int64_t i = 0; i < in; ++i) {
          float& v = w.f32()[o * in + i];
          v += c * delta.f32()[o * in + i];
          if (dora) v += (c - 1.0f) * base_w.f32()[o * in + i];
        }
      }
    }
    return w;
  };

  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    for (int s = 0; s < kNumLayerSites; ++s) {
      const LinearSite site = LinearSite(s);
      const ModuleRef ref{ModuleRef::Kind::Linear, l, site};
      const std::vector<AdapterSet::Applied>& terms = set.applied(l, site);
      // a quantized (QLoRA) base is merged in full precision: the untouched weights are decoded too
      base_linear_weight(m, ref) =
          terms.empty() ? dequantize_weight(base_linear_weight(base, ref)) : fold(base_linear_weight(base, ref), terms);
      const Tensor& db = set.bias_delta(l, site);
      if (!db.empty()) {
        Tensor& bias = base_linear_bias(m, ref);
        Tensor b = bias.to(DType::F32);
        for (int64_t i = 0; i < b.numel(); ++i) b.f32()[i] += db.f32()[i];
        bias = b;
      }
    }
  if (!set.applied(0, LinearSite::Head).empty()) m.weights.lm_head = fold(m.weights.lm_head, set.applied(0, LinearSite::Head));
  if (!set.applied_embedding().empty()) {
    // E' = E + Σ scale·(B·A)ᵀ: row v gains scale·B·A[:, v] (over Gemma's embedding scale: it multiplies E', and
    // the LoRA adds unscaled; the merged table is f32, so is the scale)
    Tensor table = m.weights.tok_embeddings.to(DType::F32);
    const int64_t hidden = c.hidden_size, vocab = c.vocab_size;
    for (const AdapterSet::Applied& t : set.applied_embedding()) {
      Tensor ba(DType::F32, {hidden, vocab});
      matmul(mat(t.factors->b), false, mat(t.factors->a), false, mut_mat(ba), t.scale / c.embedding_scale(false));
      for (int64_t v = 0; v < vocab; ++v)
        for (int64_t h = 0; h < hidden; ++h) table.f32()[v * hidden + h] += ba.f32()[h * vocab + v];
    }
    m.weights.tok_embeddings = table;
  }
  m.config.tie_word_embeddings = m.weights.lm_head.data() == m.weights.tok_embeddings.data();
  return m;
}

Model merge_adapters(const Model& base, const std::vector<std::pair<Adapter, float>>& adapters) {
  AdapterSet set(base);
  std::vector<AdapterSet::Selection> selection;
  for (const auto& [adapter, scale] : adapters) selection.push_back({set.add(adapter), scale});
  set.activate(selection);
  return merged_model(set);
}

}  // namespace lora
