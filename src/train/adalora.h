#pragma once
// AdaLoRA's training-time machinery, as PEFT's RankAllocator and AdaLoraModel.forward define it.
//
// Every adapted matrix carries an SVD-shaped update s · B diag(E) A of init_r triplets (A_k, E_k, B_·k).
//   importance of each entry w of A, E, B:   I = |w · ∂L/∂w|
//   sensitivity, smoothed:                   Ī ← β1 Ī + (1 − β1) I
//   uncertainty:                             Ū ← β2 Ū + (1 − β2) |I − Ī|
//   entry score s = Ī · Ū;  triplet score    S_k = s(E_k) + mean_i s(A_ki) + mean_o s(B_ok)
// The budget (number of triplets kept over all matrices) goes from b0 = Σ init_r to bT = target_r · M:
//   t ≤ tinit: b0, no masking;  t > T − tfinal: bT;
//   otherwise b(t) = ⌊bT + (b0 − bT) (1 − (t − tinit) / (T − tfinal − tinit))³⌋, masking when t % ΔT = 0:
// every triplet whose score is at or below the (b0 − b(t))-th smallest gets E_k = 0. At t = T − tfinal
// the mask becomes final (PEFT's rank_pattern) and is re-applied after every later step.
//
// The loss also gets the orthogonal regularizer  w_orth · mean over all A and B matrices of
// ‖A Aᵀ − I‖_F and ‖Bᵀ B − I‖_F  (PEFT divides by the number of A and B matrices together).
// The parts of a fused module (Phi-3's qkv_proj, gate_up_proj) are one matrix here as in PEFT: one A and E, and
// B their rows stacked (its score means run over all of them, BᵀB = Σ_parts B_pᵀ B_p).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "train/trainable_model.h"

namespace lora {

// b(t) and whether step t masks, for the schedule above (b0, bT in triplets).
struct BudgetStep {
  int64_t budget = 0;
  bool mask = false;
};
BudgetStep adalora_budget(const AdaLoraOptions& o, int64_t b0, int64_t bT, int64_t step);

// Adds the orthogonal regularizer's gradient into every AdaLoRA layer's grad_a / grad_b and returns its
// value (already multiplied by orth_reg_weight), to be added to the loss.
double add_orthogonal_regularization(TrainableModel& model);

class RankAllocator {
 public:
  // Tracks every AdaLoRA layer of `model`; the model's options must have total_step set.
  explicit RankAllocator(TrainableModel& model);

  // PEFT's update_and_allocate: call after the optimizer step that completed `step` steps (counted from
  // 1) and before the gradients are cleared. Returns the budget b(step).
  int64_t update_and_allocate(int64_t step);

  int64_t initial_budget() const { return b0_; }
  int64_t target_budget() const { return bT_; }
  bool finalized() const { return finalized_; }
  // Kept triplets per matrix, keyed "<module path>.lora_E": the last mask computed (all kept before any).
  std::map<std::string, std::vector<bool>> rank_pattern() const;
  // Ranks per matrix (kept triplets), in module order.
  std::vector<std::pair<std::string, int64_t>> ranks() const;

  // The smoothed scores and the mask, for an exact resume.
  std::map<std::string, Tensor> state() const;
  void load_state(const std::map<std::string, Tensor>& state, const std::string& path);

  // Triplet scores S_k of one matrix (for tests and reports).
  std::vector<double> triplet_scores(size_t matrix) const;

 private:
  // One adapted module as PEFT counts it: a layer, or the parts of a fused module (Phi-3's qkv_proj), which share
  // the first part's A and E and stack their B.
  struct Matrix {
    std::vector<LoraLinear*> parts;
    LoraLinear* layer = nullptr;                 // parts[0], holding A and E
    Tensor ipt_a, unc_a, ipt_e, unc_e;           // Ī and Ū of A and E
    std::vector<Tensor> ipt_b, unc_b;            // of each part's B
    std::vector<bool> kept;
    std::string name() const;                    // the module path (the fused one for parts)
  };
  void update_importance();
  void mask_to_budget(int64_t budget);
  void apply_mask();

  TrainableModel& model_;
  AdaLoraOptions options_;
  std::vector<Matrix> matrices_;
  int64_t b0_ = 0, bT_ = 0;
  bool finalized_ = false;
};

}  // namespace lora
