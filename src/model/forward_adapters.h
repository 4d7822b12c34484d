#pragma once
// What the inference forward pass (Transformer) asks of adapters attached to it, without knowing what
// an adapter is: adapters/adapter_set.h implements it for any number of active LoRA adapters.
//
// Every hook adds to what the base model computed, so with no adapter active the forward pass runs
// exactly the base code path and gives the base model's output bit for bit.
#include <cstdint>

#include "core/tensor.h"

namespace lora {

struct Model;

// The linear layers of a block in Hugging Face order, and the output head.
enum class LinearSite : uint8_t { Q, K, V, O, Gate, Up, Down, Head };
constexpr int kNumLayerSites = 7;  // Q..Down

class ForwardAdapters {
 public:
  virtual ~ForwardAdapters() = default;

  // The base model the adapters were checked against; the forward pass refuses any other.
  virtual const Model& base() const = 0;
  // False: nothing to add, the forward pass is the base model's.
  virtual bool active() const = 0;

  // x [n, in] is the linear's input; y [n, out] holds what the base computed with it: W x (+ b), or a
  // residual stream W x was accumulated into (o_proj, down_proj). Adds the active adapters' part.
  // `layer` is ignored for LinearSite::Head. Transformer::forward_steps may call it for distinct adapter
  // objects at once from several threads (on disjoint rows), never for one object from two threads.
  virtual void add_linear(int64_t layer, LinearSite site, const Tensor& x, Tensor& y) const = 0;
  // x [n, hidden] holds the embedding rows of tokens[0..n); adds the active embedding adapters' part.
  virtual void add_embedding(const int32_t* tokens, int64_t n, Tensor& x) const = 0;

  // Whole-module replacements (PEFT modules_to_save) of the active adapters, or null for the base's.
  virtual const Tensor* embedding_weight() const = 0;
  virtual const Tensor* lm_head_weight() const = 0;
};

}  // namespace lora
