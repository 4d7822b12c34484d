#pragma once
// Several adapters on one base model at once, for inference: load them, name them, list them,
// activate one or several (their outputs summed), disable all (the base model), unload. The base
// weights are only read, never modified.
//
//   AdapterSet set(base);
//   set.load("out/zuzu");                     // PEFT folder, named "zuzu"
//   set.load("cats.gguf", "cats");            // GGUF adapter for llama.cpp
//   Transformer t(base, 1, 512);
//   t.set_adapters(&set);
//   set.activate({{"zuzu", 1.0f}, {"cats", 0.5f}});   // y = W x + Σ scale_i · ΔW_i x
//   set.disable_all();                                 // the base model's output, bit for bit
//
// What several active adapters mean, module by module (PEFT's semantics where it has one):
//   LoRA        ΔW_i x = scale_i · s_i · B_i A_i x, summed over the adapters adapting the module.
//   DoRA        each DoRA adapter adds its own change relative to the base: (c_i − 1) ⊙ W x +
//               c_i ⊙ scale_i s_i B_i A_i x with c_i = m_i / ‖W + scale_i s_i B_i A_i‖_row (the user
//               scale multiplies s_i, as PEFT's set_scale does; alone at scale 1 this is exactly DoRA).
//   embedding   row v of the table gains Σ scale_i · s_i · B_i A_i[:, v].
//   biases      trained biases add their change: b + Σ scale_i (b_i − b).
//   modules_to_save (whole embed_tokens / lm_head weights): they replace the base module, so at most one
//               active adapter may replace a given module, at scale 1 (an error otherwise, as in PEFT);
//               the others' LoRA on that module adds on top of the replacement.
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "adapters/adapter.h"
#include "model/forward_adapters.h"

namespace lora {

class AdapterSet final : public ForwardAdapters {
 public:
  explicit AdapterSet(const Model& base);
  ~AdapterSet() override;

  // Reads a PEFT folder or GGUF adapter file, checks it fits the base (FormatError naming the first
  // mismatching tensor) and keeps it, inactive, under `name` (default: the adapter's folder or file name;
  // a taken default name gets a suffix "-2", "-3"...). Returns the name.
  std::string load(const std::string& path, const std::string& name = "");
  // The same for an adapter already in memory.
  std::string add(Adapter adapter, const std::string& name = "");
  // Removes it (deactivating it first if it is active).
  void unload(const std::string& name);

  std::vector<std::string> names() const;  // in load order
  bool contains(const std::string& name) const;
  const Adapter& adapter(const std::string& name) const;

  struct Selection {
    std::string name;
    float scale = 1.0f;
  };
  // Exactly these adapters active, replacing the previous choice; empty: none (the base model).
  void activate(const std::vector<Selection>& selection);
  void activate(const std::string& name, float scale = 1.0f) { activate(std::vector<Selection>{{name, scale}}); }
  void disable_all() { activate(std::vector<Selection>{}); }
  const std::vector<Selection>& active_adapters() const { return active_; }

  // One LoRA applied to one module: its factors, scale · s, and DoRA's c = m / ‖W + scale·s·BA‖_row.
  // Several plain LoRAs active on one module are stacked into one (A = [A_1; A_2], B = [k_1 B_1, k_2 B_2]
  // with k_i = scale_i s_i: "cat"), so each module costs two small products however many are active.
  struct Applied {
    const LoraFactors* factors = nullptr;
    float scale = 1.0f;
    Tensor dora_c;  // [out], empty unless DoRA
    Tensor b_t;     // Bᵀ [r, out]: at decode, B·u as a sum of its rows (kernels/small_matmul); empty for embeddings
  };
  const std::vector<Applied>& applied(int64_t layer, LinearSite site) const;  // layer ignored for Head
  const std::vector<Applied>& applied_embedding() const { return embedding_terms_; }
  const Tensor& bias_delta(int64_t layer, LinearSite site) const;  // Σ scale_i (b_i − b), empty when none

  // ForwardAdapters
  const Model& base() const override { return base_; }
  bool active() const override { return !active_.empty(); }
  void add_linear(int64_t layer, LinearSite site, const Tensor& x, Tensor& y) const override;
  void add_embedding(const int32_t* tokens, int64_t n, Tensor& x) const override;
  const Tensor* embedding_weight() const override { return embedding_weight_; }
  const Tensor* lm_head_weight() const override { return lm_head_weight_; }

 private:
  struct Entry;
  Entry& entry(const std::string& name) const;
  std::string unique_name(const std::string& wanted) const;
  Tensor scratch(int slot, int64_t rows, int64_t cols) const;

  const Model& base_;
  std::vector<std::unique_ptr<Entry>> entries_;
  std::vector<Selection> active_;
  // Resolved for the active selection.
  std::vector<std::array<std::vector<Applied>, kNumLayerSites>> terms_;
  std::vector<std::array<Tensor, kNumLayerSites>> bias_delta_;
  std::vector<Applied> head_terms_, embedding_terms_;
  std::vector<std::unique_ptr<LoraFactors>> fused_;  // several LoRAs of one module stacked into one
  const Tensor* embedding_weight_ = nullptr;
  const Tensor* lm_head_weight_ = nullptr;
  mutable std::array<Tensor, 3> scratch_;  // reused buffers for add_linear
};

}  // namespace lora
