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
    // E' = E + s·(B·A)ᵀ: row v gains s·B·A[:, v]
    Tensor table = m.weights.tok_embeddings.to(DType::F32);
    Tensor ba(DType::F32, {e->lora_embedding_b.dim(0), e->lora_embedding_a.dim(1)});  // [hidden, vocab]
    matmul(mat(e->lora_embedding_b), false, mat(e->lora_embedding_a), false, mut_mat(ba), e->scaling);
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

}  // namespace lora
