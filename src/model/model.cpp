#include "model/model.h"

namespace lora {

int64_t Model::parameter_count() const {
  const ModelWeights& w = weights;
  auto n = [](const Tensor& t) { return t.empty() ? int64_t(0) : t.numel(); };
  int64_t total = n(w.tok_embeddings) + n(w.norm);
  if (!config.tie_word_embeddings && w.lm_head.data() != w.tok_embeddings.data()) total += n(w.lm_head);
  for (const LayerWeights& l : w.layers)
    total += n(l.attn_norm) + n(l.wq) + n(l.wk) + n(l.wv) + n(l.wo) + n(l.bq) + n(l.bk) + n(l.bv) +
             n(l.ffn_norm) + n(l.w_gate) + n(l.w_up) + n(l.w_down);
  return total;
}

}  // namespace lora
