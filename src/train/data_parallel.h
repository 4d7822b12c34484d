#pragma once
// Data-parallel training (DDP's scheme): every rank holds the whole model and data set, takes its share of
// every global batch, and the trainable gradients are summed over the ranks before the optimizer step, so
// every rank applies the same update to the same weights.
//
// The global batch of a step is what one process would train on: --batch-size x --grad-accum examples,
// contiguous in the epoch's order. Rank r takes the contiguous slice rank_share(...) of it and runs it in
// micro-batches of at most --batch-size. The loss is token-weighted over the whole global batch: every
// rank scales its gradients by 1 / (targets in the global batch), which it counts itself (every rank has
// the data), so the sum over the ranks is exactly the one-process gradient, up to the order of the sums.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/communicator.h"
#include "model/model.h"
#include "train/trainable_model.h"

namespace lora {

struct ExampleRange {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
};

// Rank `rank`'s contiguous slice of `all` among `size` ranks; the first all.size() % size ranks take one more.
ExampleRange rank_share(ExampleRange all, int rank, int size);

// Sums every param's gradient over the ranks, in fp32 buckets of at most bucket_floats values (a few MB:
// large enough that each all-reduce runs at bandwidth, small enough that the staging copy stays in cache).
class GradientAllReduce {
 public:
  GradientAllReduce(std::vector<Param>& params, Communicator& comm, size_t bucket_floats = size_t(1) << 20);
  void run(const std::string& what);
  size_t floats() const { return total_; }  // per step, per rank

 private:
  std::vector<Param>& params_;
  Communicator& comm_;
  size_t total_ = 0;
  std::vector<float> bucket_;
};

// Rank 0's value of every param (and of the tensors given) on every rank: the same start everywhere,
// whatever each rank's initialization or checkpoint reading did.
void broadcast_tensors(const std::vector<Tensor*>& tensors, Communicator& comm, const std::string& what);

// What every rank must agree on, as (name, fingerprint) pairs.
using RunFingerprint = std::vector<std::pair<std::string, uint64_t>>;
// Fails on every rank, naming the first rank and item that differ from rank 0's, unless all agree.
void check_same_run(const RunFingerprint& mine, Communicator& comm);

// The base model: configuration, every tensor's name, type and shape, and a sample of its bytes (its first
// and last 4 KB: reading all of a 7B model would take longer than it is worth).
uint64_t model_fingerprint(const Model& model);
uint64_t tensor_fingerprint(const std::vector<const Tensor*>& tensors);  // every byte

}  // namespace lora
