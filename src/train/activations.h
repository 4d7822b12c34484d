#pragma once
// What one transformer block keeps from its forward pass for the backward pass, and the buffers its
// passes work in. With gradient checkpointing only the block input (kept outside, in the residual stream)
// survives; one LayerActivations is then shared by all blocks and refilled by recomputation during the
// backward.
//
// Activations are stored in the block's storage type E: bf16 when every linear weight of the block is bf16
// or quantized (the GEMMs then read bf16 operands as they are, with fp32 accumulation, as PyTorch's autocast
// does), f32 otherwise. The residual stream, the normalization statistics, the GEMM outputs and every
// gradient that is summed stay f32; LoRA weights, their gradients and the optimizer are f32 always.
#include <array>

#include "adapters/lora_linear.h"
#include "core/tensor.h"
#include "train/trainable_model.h"

namespace lora {

struct TrainableModel::LayerActivations {
  DType dtype = DType::F32;    // E
  Tensor rstd_attn, xn_attn;   // [N] f32, [N, hidden] E: RMSNorm before attention
  Tensor q, k, v;              // [N, q_dim], [N, kv_dim] x2, E; q and k after their head norms and RoPE
  Tensor q_pre, k_pre;         // f32 projections before the head norms, and their
  Tensor rstd_q, rstd_k;       // [N · heads] f32 statistics (qk_norm only, else empty)
  Tensor att;                  // [N, q_dim] E: attention output, input of o_proj
  Tensor attn_stats;           // [2, N · n_heads] f32: softmax max and 1/sum of every query (attention_forward)
  Tensor o_out, rstd_post_attn;   // Gemma: [N, hidden] f32 o_proj output and [N] its post-attention norm's statistics
  Tensor h;                    // [N, hidden] f32: residual stream after attention
  Tensor rstd_ffn, xn_ffn;     // RMSNorm before the MLP
  Tensor gate, up, act;        // [N, inter] E: act = silu(gate) ⊙ up (Gemma: gelu(gate) ⊙ up), input of down_proj
  Tensor down_out, rstd_post_ffn;  // Gemma: [N, hidden] f32 down_proj output and [N] its post-MLP norm's statistics
  std::array<LinearSaved, kNumProj> linear;

  void allocate(const ModelConfig& c, int64_t n, DType e) {
    if (!xn_attn.empty() && xn_attn.dim(0) == n && dtype == e) return;
    dtype = e;
    rstd_attn = Tensor(DType::F32, {n});
    xn_attn = Tensor(e, {n, c.hidden_size});
    q = Tensor(e, {n, c.q_dim()});
    k = Tensor(e, {n, c.kv_dim()});
    v = Tensor(e, {n, c.kv_dim()});
    att = Tensor(e, {n, c.q_dim()});
    attn_stats = Tensor(DType::F32, {2, n * c.num_attention_heads});
    if (c.qk_norm) {
      q_pre = Tensor(DType::F32, {n, c.q_dim()});
      k_pre = Tensor(DType::F32, {n, c.kv_dim()});
      rstd_q = Tensor(DType::F32, {n * c.num_attention_heads});
      rstd_k = Tensor(DType::F32, {n * c.num_key_value_heads});
    }
    if (c.gemma_block) {
      o_out = Tensor(DType::F32, {n, c.hidden_size});
      rstd_post_attn = Tensor(DType::F32, {n});
      down_out = Tensor(DType::F32, {n, c.hidden_size});
      rstd_post_ffn = Tensor(DType::F32, {n});
    }
    h = Tensor(DType::F32, {n, c.hidden_size});
    rstd_ffn = Tensor(DType::F32, {n});
    xn_ffn = Tensor(e, {n, c.hidden_size});
    gate = Tensor(e, {n, c.intermediate_size});
    up = Tensor(e, {n, c.intermediate_size});
    act = Tensor(e, {n, c.intermediate_size});
  }
};

// The f32 outputs of the GEMMs whose results are stored in bf16 after one more pass (RoPE, SwiGLU, a cast):
// used by one block at a time, so shared by all. Unused (empty) on f32 blocks, whose GEMMs write the stored
// activations directly.
struct TrainableModel::ForwardScratch {
  Tensor q, k, v, gate, up;

  void allocate(const ModelConfig& c, int64_t n) {
    if (!q.empty() && q.dim(0) == n) return;
    q = Tensor(DType::F32, {n, c.q_dim()});
    k = Tensor(DType::F32, {n, c.kv_dim()});
    v = Tensor(DType::F32, {n, c.kv_dim()});
    gate = Tensor(DType::F32, {n, c.intermediate_size});
    up = Tensor(DType::F32, {n, c.intermediate_size});
  }
};

// Gradient buffers of one block's backward pass, allocated once per storage type and reused by every block
// (only one block is in its backward pass at a time). Sums (dxn, dres, the GEMM outputs) are f32; what a GEMM
// reads next (dgate, dup, the RoPE'd dq, dk, dv, the residual gradient dx_e) is in E.
struct TrainableModel::GradScratch {
  DType dtype = DType::F32;
  Tensor dact;               // [N, inter] f32
  Tensor dgate, dup;         // [N, inter] E
  Tensor dxn, dres;          // [N, hidden] f32
  Tensor dxn2;               // [N, hidden] f32: the input gradient of the projections run beside the first
  Tensor datt, dq;           // [N, q_dim] f32
  Tensor dk, dv;             // [N, kv_dim] f32
  Tensor dq_e, dk_e, dv_e;   // E copies after RoPE's backward (empty when E is f32: in place)
  Tensor dx_e;               // [N, hidden] E copy of the residual gradient (empty when E is f32)
  Tensor dpost;              // [N, hidden] f32, Gemma: the gradient at a post-norm's input (o_proj's, down_proj's output)

  void allocate(const ModelConfig& c, int64_t n, DType e) {
    if (!dxn.empty() && dxn.dim(0) == n && dtype == e) return;
    dtype = e;
    dact = Tensor(DType::F32, {n, c.intermediate_size});
    dgate = Tensor(e, {n, c.intermediate_size});
    dup = Tensor(e, {n, c.intermediate_size});
    dxn = Tensor(DType::F32, {n, c.hidden_size});
    dres = Tensor(DType::F32, {n, c.hidden_size});
    dxn2 = Tensor(DType::F32, {n, c.hidden_size});
    datt = Tensor(DType::F32, {n, c.q_dim()});
    dq = Tensor(DType::F32, {n, c.q_dim()});
    dk = Tensor(DType::F32, {n, c.kv_dim()});
    dv = Tensor(DType::F32, {n, c.kv_dim()});
    const bool f32 = e == DType::F32;
    dq_e = f32 ? Tensor() : Tensor(e, {n, c.q_dim()});
    dk_e = f32 ? Tensor() : Tensor(e, {n, c.kv_dim()});
    dv_e = f32 ? Tensor() : Tensor(e, {n, c.kv_dim()});
    dx_e = f32 ? Tensor() : Tensor(e, {n, c.hidden_size});
    dpost = c.gemma_block ? Tensor(DType::F32, {n, c.hidden_size}) : Tensor();
  }
};

}  // namespace lora
