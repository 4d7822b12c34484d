#pragma once
// GeGLU with the tanh approximation of GELU (Gemma's MLP, transformers' "gelu_pytorch_tanh"):
//
//   act = gelu(g) ⊙ u,   gelu(g) = ½ g (1 + tanh(c (g + a g³))),  c = √(2/π), a = 0.044715
//   gelu'(g) = ½ (1 + t) + ½ g (1 − t²) c (1 + 3 a g²),  t = tanh(c (g + a g³))
//   dgate = dout ⊙ u ⊙ gelu'(g),   dup = dout ⊙ gelu(g)
//
// The same shapes and storage types as swiglu.h, so the block swaps one for the other.
#include <cstdint>

#include "core/dtype.h"

namespace lora {

// out = gelu(gate) ⊙ up over n values; out may alias gate (f32).
void geglu_forward(const float* gate, const float* up, float* out, int64_t n);

// The training forward: act in the storage type T (float or bf16) and, when gate_keep and up_keep are given, the
// inputs rounded to T as well, which is what the backward reads.
template <typename T>
void geglu_forward(const float* gate, const float* up, T* act, T* gate_keep, T* up_keep, int64_t n);

// dgate, dup (overwritten) in the type G the next GEMM reads; gate and up are stored as T.
template <typename T, typename G>
void geglu_backward(const float* dout, const T* gate, const T* up, G* dgate, G* dup, int64_t n);

inline void geglu_backward(const float* dout, const float* gate, const float* up, float* dgate, float* dup, int64_t n) {
  geglu_backward<float, float>(dout, gate, up, dgate, dup, n);
}

// The formulas above in double, one value at a time: for tests.
void geglu_forward_reference(const float* gate, const float* up, float* out, int64_t n);
void geglu_backward_reference(const float* dout, const float* gate, const float* up, float* dgate, float* dup, int64_t n);

}  // namespace lora
