#pragma once
// AdamW with fp32 state, as torch.optim.AdamW computes it, and gradient clipping by global norm as
// torch.nn.utils.clip_grad_norm_ does.
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "train/trainable_model.h"

namespace lora {

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.0f;
};

class AdamW {
 public:
  AdamW(const std::vector<Param>& params, const AdamWConfig& config);

  // One update of every param at learning rate lr:
  //   p ← p − lr·wd·p;  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
  //   p ← p − lr/(1−β1ᵗ) · m / (sqrt(v)/sqrt(1−β2ᵗ) + eps)
  void step(const std::vector<Param>& params, float lr);

  int64_t steps() const { return t_; }
  // Optimizer state for checkpoints: m and v per param, in param order.
  std::vector<Tensor>& exp_avg() { return m_; }
  std::vector<Tensor>& exp_avg_sq() { return v_; }
  void set_steps(int64_t t) { t_ = t; }

 private:
  AdamWConfig config_;
  std::vector<Tensor> m_, v_;
  int64_t t_ = 0;
};

// Scales all gradients so their global L2 norm is at most max_norm; returns the norm before clipping.
double clip_grad_norm(const std::vector<Param>& params, double max_norm);

}  // namespace lora
