#include "model/model.h"

namespace lora {

int64_t Model::parameter_count() const {
  const ModelWeights& w = weights;
  auto n = [](const Tensor& t) { return t.empty() ? int64_t(0) : t.numel(); };
  int64_t total = n(w.tok_embeddings) + n(w.norm);
  if (!config.tie_word_embeddings && w.lm_head.data() != w.tok_embeddings.data()) total += n(w.lm_head);
  for (const LayerWeights& l : w.layers) l.for_each([&](const char*, const Tensor& t) { total += n(t); });
  return total;
}

}  // namespace lora
