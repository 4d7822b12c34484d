#pragma once
// A linear layer with a LoRA adapter beside its frozen weight:
//
//   y = W x + b + s · B A dropout(x),          s = alpha / r  (alpha / sqrt(r) with rsLoRA)
//
// and with DoRA the adapted weight is rescaled per output row by a trained magnitude m:
//
//   W' = m ⊙ (W + s B A) / ‖W + s B A‖_row     (the norm is a constant in the backward pass).
//
// AdaLoRA's SVD-shaped update is the same layer with A's rows scaled by trained singular values E:
//
//   y = W x + b + s · B (E ⊙ A dropout(x)),    s = alpha / (init_r + 1e-5)
//
// adapted_linear_forward/backward run the whole layer (base and adapter) so the chain rule for both
// reads in one place. Any part may be absent: no adapter (frozen or fully trained linear), no bias,
// a trainable weight (full fine-tuning) or bias (bias = "all").
#include <cstdint>
#include <random>
#include <string>

#include "core/profiler.h"
#include "core/tensor.h"

namespace lora {

struct LoraLinear {
  std::string path;  // module path, e.g. "model.layers.0.self_attn.q_proj"
  // The fused module it is a part of (Phi-3's "model.layers.0.self_attn.qkv_proj"), whose LoRA A (and AdaLoRA's E) the
  // parts share; "" for a module of its own.
  std::string fused_path;
  int64_t in_features = 0, out_features = 0, r = 0;
  float scaling = 1.0f;
  float dropout = 0.0f;
  bool use_dora = false;
  Tensor lora_a, lora_b, magnitude;     // [r, in], [out, r], [out] (DoRA); f32
  Tensor grad_a, grad_b, grad_magnitude;
  Tensor lora_e, grad_e;                // [r, 1] AdaLoRA's singular values; empty for plain LoRA
  Tensor pissa_a0, pissa_b0;            // PiSSA's initial A and B, to save the adapter as a plain LoRA

  LoraLinear() = default;
  LoraLinear(std::string path, int64_t in, int64_t out, int64_t r, float scaling, float dropout, bool dora);

  bool adalora() const { return !lora_e.empty(); }
  // Gives the layer AdaLoRA's singular values E (zero), making it an SVD-shaped adapter.
  void add_singular_values();
  // ΔW = s · B A (AdaLoRA: s · B (E ⊙ A)) as an [out, in] f32 tensor (merging, DoRA norms, tests).
  Tensor delta_weight() const;
  // The plain LoRA computing the same update: AdaLoRA's E folded into A (a copy; rows with E = 0 dropped).
  LoraLinear folded() const;
};

// What the backward pass needs from the forward pass of one adapted linear.
struct LinearSaved {
  Tensor x_drop;       // [N, in] dropout(x), only when dropout > 0
  Tensor keep;         // [N, in] u8 dropout mask (1 = kept), only when dropout > 0
  Tensor u;            // [N, r]  A · dropout(x)  (AdaLoRA: E ⊙ A · dropout(x))
  Tensor u_a;          // [N, r]  A · dropout(x) before AdaLoRA's E, only for AdaLoRA
  Tensor dora_z;       // [N, out] W x_drop + s B u: what the magnitude multiplies, over the row norm
  Tensor weight_norm;  // [out]   ‖W + s B A‖_row (DoRA), a constant for the backward
};

struct LinearParams {
  const Tensor* weight = nullptr;  // [out, in], f32 or bf16
  const Tensor* bias = nullptr;    // [out] or null
  LoraLinear* lora = nullptr;      // null: plain linear
  Tensor* weight_grad = nullptr;   // accumulated when the weight is trained (full fine-tuning)
  Tensor* bias_grad = nullptr;     // accumulated when the bias is trained
  Profiler* profiler = nullptr;    // times the base GEMMs and the LoRA products apart (may be null)
};

// x [N, in] -> y [N, out]. `saved` receives what the backward needs (may be null at inference).
// rng draws the dropout mask (needed only when the adapter has dropout > 0 and training is on).
void adapted_linear_forward(const LinearParams& p, const Tensor& x, Tensor& y, LinearSaved* saved,
                            std::mt19937_64* rng);

// Given dy [N, out]: dx (accumulated into when accumulate_dx, else overwritten), and the gradients of
// every trainable part (lora grad_a/grad_b/grad_magnitude, weight_grad, bias_grad) accumulated.
// x and dy may be f32 or bf16 (the bf16 training path); dx is f32.
void adapted_linear_backward(const LinearParams& p, const Tensor& x, const Tensor& dy, const LinearSaved& saved,
                             Tensor& dx, bool accumulate_dx);
// The same where nothing needs the input gradient (the first block of a model whose embedding is frozen):
// dx null skips dy·W and the adapter's part of it.
void adapted_linear_backward(const LinearParams& p, const Tensor& x, const Tensor& dy, const LinearSaved& saved,
                             Tensor* dx, bool accumulate_dx);

// The adapter's down-projection alone, u = A · dropout(x) into saved.u (and the dropout mask), and its
// backward from du = dL/du: grad_a += duᵀ x_d, dx += dropout'(du A + extra_dxd) (dx = ... when not
// accumulate_dx; dx null: grad_a only). With AdaLoRA's E,
// u = E ⊙ A x_d, and the backward also gives grad_e += Σ_rows du ⊙ A x_d. Used where the
// up-projection is fused elsewhere (the lm_head inside the chunked cross-entropy).
void lora_down_forward(const LoraLinear& l, const Tensor& x, LinearSaved& saved, std::mt19937_64* rng);
void lora_down_backward(LoraLinear& l, const Tensor& x, const LinearSaved& saved, const Tensor& du, Tensor* dx,
                        const Tensor* extra_dxd = nullptr, bool accumulate_dx = true);

}  // namespace lora
