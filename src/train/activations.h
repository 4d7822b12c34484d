#pragma once
// What one transformer block keeps from its forward pass for the backward pass. With gradient
// checkpointing only the block input (kept outside, in the residual stream) survives; one
// LayerActivations is then shared by all blocks and refilled by recomputation during the backward.
#include <array>

#include "adapters/lora_linear.h"
#include "core/tensor.h"
#include "train/trainable_model.h"

namespace lora {

struct TrainableModel::LayerActivations {
  Tensor rstd_attn, xn_attn;   // [N], [N, hidden]: RMSNorm before attention
  Tensor q, k, v;              // [N, q_dim], [N, kv_dim] x2; q and k after RoPE
  Tensor att;                  // [N, q_dim] attention output, input of o_proj
  Tensor attn_stats;           // [2, N · n_heads] softmax max and 1/sum of every query (attention_forward)
  Tensor h;                    // [N, hidden] residual stream after attention
  Tensor rstd_ffn, xn_ffn;     // RMSNorm before the MLP
  Tensor gate, up, act;        // [N, inter]: act = silu(gate) ⊙ up, input of down_proj
  std::array<LinearSaved, kNumProj> linear;

  void allocate(const ModelConfig& c, int64_t n) {
    if (!xn_attn.empty() && xn_attn.dim(0) == n) return;
    rstd_attn = Tensor(DType::F32, {n});
    xn_attn = Tensor(DType::F32, {n, c.hidden_size});
    q = Tensor(DType::F32, {n, c.q_dim()});
    k = Tensor(DType::F32, {n, c.kv_dim()});
    v = Tensor(DType::F32, {n, c.kv_dim()});
    att = Tensor(DType::F32, {n, c.q_dim()});
    attn_stats = Tensor(DType::F32, {2, n * c.num_attention_heads});
    h = Tensor(DType::F32, {n, c.hidden_size});
    rstd_ffn = Tensor(DType::F32, {n});
    xn_ffn = Tensor(DType::F32, {n, c.hidden_size});
    gate = Tensor(DType::F32, {n, c.intermediate_size});
    up = Tensor(DType::F32, {n, c.intermediate_size});
    act = Tensor(DType::F32, {n, c.intermediate_size});
  }
};

// Gradient buffers of one block's backward pass, allocated once and reused by every block (only one
// block is in its backward pass at a time).
struct TrainableModel::GradScratch {
  Tensor dact, dgate, dup;  // [N, inter]
  Tensor dxn, dres;         // [N, hidden]
  Tensor datt, dq;          // [N, q_dim]
  Tensor dk, dv;            // [N, kv_dim]

  void allocate(const ModelConfig& c, int64_t n) {
    if (!dxn.empty() && dxn.dim(0) == n) return;
    dact = Tensor(DType::F32, {n, c.intermediate_size});
    dgate = Tensor(DType::F32, {n, c.intermediate_size});
    dup = Tensor(DType::F32, {n, c.intermediate_size});
    dxn = Tensor(DType::F32, {n, c.hidden_size});
    dres = Tensor(DType::F32, {n, c.hidden_size});
    datt = Tensor(DType::F32, {n, c.q_dim()});
    dq = Tensor(DType::F32, {n, c.q_dim()});
    dk = Tensor(DType::F32, {n, c.kv_dim()});
    dv = Tensor(DType::F32, {n, c.kv_dim()});
  }
};

}  // namespace lora
