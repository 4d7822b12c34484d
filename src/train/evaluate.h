#pragma once
// Batching token sequences for the model, and the evaluation loss over a data set.
#include <cstdint>
#include <vector>

#include "data/train_example.h"
#include "model/model.h"
#include "train/trainable_model.h"

namespace lora {

// B sequences padded to the longest; targets[t] = labels[t + 1] (kIgnoreIndex past the end).
struct PaddedBatch {
  int64_t B = 0, T = 0;
  int64_t n_targets = 0;  // counted targets
  int64_t n_tokens = 0;   // real (unpadded) tokens
  std::vector<int32_t> tokens, targets;
};

// The examples data[order[begin]], ..., data[order[end - 1]].
PaddedBatch make_padded_batch(const std::vector<TrainExample>& data, const std::vector<size_t>& order, size_t begin, size_t end);
// The counted targets of one example (labels[t + 1] that are not kIgnoreIndex): its share of a batch's n_targets.
int64_t counted_targets(const TrainExample& e);

struct EvalResult {
  double loss = 0, perplexity = 0;  // mean NLL over the counted targets, and exp of it
  int64_t tokens = 0;               // counted targets
};

// The result of a summed NLL over `count` targets.
EvalResult eval_result(double loss_sum, int64_t count);

// Mean loss and perplexity over every counted token of `data`, in batches (no dropout).
EvalResult evaluate_examples(TrainableModel& model, const std::vector<TrainExample>& data, int64_t batch_size);
// The same for a model as it is (a base model, or one with adapters merged in).
EvalResult evaluate_examples(const Model& model, const std::vector<TrainExample>& data, int64_t batch_size);

}  // namespace lora
