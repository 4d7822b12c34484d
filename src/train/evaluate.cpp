#include "train/evaluate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace lora {

PaddedBatch make_padded_batch(const std::vector<TrainExample>& data, const std::vector<size_t>& order, size_t begin, size_t end) {
  PaddedBatch b;
  b.B = int64_t(end - begin);
  for (size_t i = begin; i < end; ++i) b.T = std::max<int64_t>(b.T, int64_t(data[order[i]].input_ids.size()));
  b.tokens.assign(size_t(b.B * b.T), 0);
  b.targets.assign(size_t(b.B * b.T), kIgnoreIndex);
  for (int64_t r = 0; r < b.B; ++r) {
    const TrainExample& e = data[order[begin + size_t(r)]];
    b.n_tokens += int64_t(e.input_ids.size());
    b.n_targets += counted_targets(e);
    for (size_t t = 0; t < e.input_ids.size(); ++t) {
      b.tokens[size_t(r * b.T) + t] = e.input_ids[t];
      if (t + 1 < e.labels.size()) b.targets[size_t(r * b.T) + t] = e.labels[t + 1];
    }
  }
  return b;
}

int64_t counted_targets(const TrainExample& e) {
  int64_t n = 0;
  for (size_t t = 0; t + 1 < e.labels.size() && t < e.input_ids.size(); ++t) n += e.labels[t + 1] != kIgnoreIndex;
  return n;
}

EvalResult eval_result(double loss_sum, int64_t count) {
  EvalResult e;
  e.tokens = count;
  e.loss = count ? loss_sum / double(count) : 0.0;
  e.perplexity = std::exp(e.loss);
  return e;
}

EvalResult evaluate_examples(TrainableModel& model, const std::vector<TrainExample>& data, int64_t batch_size) {
  if (batch_size < 1) fail("evaluation batch size must be at least 1");
  std::vector<size_t> order(data.size());
  std::iota(order.begin(), order.end(), size_t(0));
  double loss_sum = 0;
  int64_t count = 0;
  for (size_t i = 0; i < data.size(); i += size_t(batch_size)) {
    const PaddedBatch b = make_padded_batch(data, order, i, std::min(data.size(), i + size_t(batch_size)));
    const auto r = model.evaluate(b.tokens.data(), b.targets.data(), b.B, b.T);
    loss_sum += r.loss_sum;
    count += r.count;
  }
  return eval_result(loss_sum, count);
}

EvalResult evaluate_examples(const Model& model, const std::vector<TrainExample>& data, int64_t batch_size) {
  LoraConfig nothing;
  nothing.target_modules.clear();  // no adapter anywhere: the forward pass of the model itself
  TrainableModel m = TrainableModel::lora(model, nothing, 0);
  return evaluate_examples(m, data, batch_size);
}

}  // namespace lora
