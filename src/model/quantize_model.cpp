#include "model/quantize_model.h"

#include "core/error.h"

namespace lora {

std::array<Tensor*, 7> linear_weights(LayerWeights& l) {
  return {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down};
}

std::array<const Tensor*, 7> linear_weights(const LayerWeights& l) {
  return {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down};
}

void quantize_linear_weights(Model& m, const QuantConfig& config) {
  for (size_t i = 0; i < m.weights.layers.size(); ++i)
    for (Tensor* t : linear_weights(m.weights.layers[i])) {
      if (t->empty()) continue;
      if (t->quantized()) {
        if (t->dtype() != config.type)
          fail("layer {} is already quantized to {}; it cannot be quantized to {} again (load the full-precision model)",
               i, quant_type_name(t->dtype()), quant_type_name(config.type));
        continue;
      }
      *t = quantize(*t, config);
    }
}

bool has_quantized_weights(const Model& m) {
  for (const LayerWeights& l : m.weights.layers)
    for (const Tensor* t : linear_weights(l))
      if (t->quantized()) return true;
  return false;
}

Tensor dequantize_weight(const Tensor& t) {
  if (!t.quantized()) return t;
  Tensor f = dequantize(t);
  return t.quant()->source_dtype == DType::BF16 ? f.to(DType::BF16) : f;
}

QuantSummary quant_summary(const Model& m) {
  QuantSummary s;
  for (const LayerWeights& l : m.weights.layers)
    for (const Tensor* t : linear_weights(l))
      if (t->quantized()) {
        ++s.tensors;
        s.elements += t->numel();
        s.bytes += t->nbytes() + t->quant()->nbytes();
      }
  s.bits_per_weight = s.elements ? 8.0 * double(s.bytes) / double(s.elements) : 0.0;
  return s;
}

}  // namespace lora
