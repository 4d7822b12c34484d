#include "train/data_parallel.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"

namespace lora {

ExampleRange rank_share(ExampleRange all, int rank, int size) {
  const size_t n = all.size(), base = n / size_t(size), extra = n % size_t(size), r = size_t(rank);
  const size_t begin = all.begin + r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

GradientAllReduce::GradientAllReduce(std::vector<Param>& params, Communicator& comm, size_t bucket_floats)
    : params_(params), comm_(comm) {
  for (const Param& p : params_) total_ += size_t(p.grad->numel());
  bucket_.resize(std::min(total_, bucket_floats));
}

// The gradients, end to end, form one virtual array; each bucket is the next window of it, gathered into
// the staging buffer, summed over the ranks and scattered back.
void GradientAllReduce::run(const std::string& what) {
  if (comm_.size() == 1 || total_ == 0) return;
  size_t param = 0, offset = 0;  // the first value not yet reduced
  while (param < params_.size()) {
    struct Piece {
      float* grad;
      size_t n;
    };
    std::vector<Piece> pieces;
    size_t filled = 0;
    for (; param < params_.size() && filled < bucket_.size(); offset = 0, ++param) {
      float* g = params_[param].grad->f32();
      const size_t left = size_t(params_[param].grad->numel()) - offset, n = std::min(left, bucket_.size() - filled);
      std::memcpy(bucket_.data() + filled, g + offset, n * sizeof(float));
      pieces.push_back({g + offset, n});
      filled += n;
      if (n < left) {  // the bucket is full inside this param: the next bucket starts where it stopped
        offset += n;
        break;
      }
    }
    if (filled == 0) break;
    comm_.allreduce_sum(bucket_.data(), filled, what);
    const float* from = bucket_.data();
    for (const Piece& p : pieces) {
      std::memcpy(p.grad, from, p.n * sizeof(float));
      from += p.n;
    }
  }
}

void broadcast_tensors(const std::vector<Tensor*>& tensors, Communicator& comm, const std::string& what) {
  if (comm.size() == 1) return;
  for (Tensor* t : tensors) comm.broadcast(t->data(), t->nbytes(), what);
}

void check_same_run(const RunFingerprint& mine, Communicator& comm) {
  if (comm.size() == 1) return;
  for (const auto& [item, value] : mine) {
    const std::vector<uint64_t> all = comm.allgather(value, "the check that every rank runs the same " + item);
    for (size_t r = 1; r < all.size(); ++r)
      if (all[r] != all[0])
        fail("rank {} of {} runs with another {} than rank 0 (fingerprint {:016x}, rank 0: {:016x}): every rank must "
             "train the same model on the same data with the same options", r, all.size(), item, all[r], all[0]);
  }
}

namespace {

void add_sampled(Fnv1a& h, const std::string& name, const Tensor& t) {
  h.add(name).add(int64_t(t.dtype()));
  for (int64_t d : t.shape()) h.add(d);
  if (t.empty()) return;
  constexpr size_t kSample = 4096;
  const auto* bytes = static_cast<const unsigned char*>(t.data());
  const size_t n = t.nbytes();
  h.add(bytes, std::min(n, kSample));
  if (n > kSample) h.add(bytes + n - std::min(n - kSample, kSample), std::min(n - kSample, kSample));
}

}  // namespace

uint64_t model_fingerprint(const Model& model) {
  Fnv1a h;
  h.add(model.config.to_hf_json().dump());
  const ModelWeights& w = model.weights;
  add_sampled(h, "tok_embeddings", w.tok_embeddings);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    w.layers[l].for_each([&](const char* name, const Tensor& t) { add_sampled(h, fmt::format("layers.{}.{}", l, name), t); });
  }
  add_sampled(h, "norm", w.norm);
  add_sampled(h, "lm_head", w.lm_head);
  return h.value;
}

uint64_t tensor_fingerprint(const std::vector<const Tensor*>& tensors) {
  Fnv1a h;
  for (const Tensor* t : tensors) {
    for (int64_t d : t->shape()) h.add(d);
    h.add(t->data(), t->nbytes());
  }
  return h.value;
}

}  // namespace lora
