#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace lora {

// out = silu(gate) ⊙ up, elementwise over n values; silu(g) = g·σ(g). out may alias gate (f32).
void swiglu_forward(const float* gate, const float* up, float* out, int64_t n);

// The training forward: act = silu(gate) ⊙ up in the storage type T (float or bf16), and, when gate_keep and
// up_keep are given, the inputs rounded to T as well, which is what the backward reads.
template <typename T>
void swiglu_forward(const float* gate, const float* up, T* act, T* gate_keep, T* up_keep, int64_t n);

// dgate = dout ⊙ up ⊙ σ(g)(1 + g(1 − σ(g)));  dup = dout ⊙ silu(g). Overwrites dgate and dup, in the type G
// (float or bf16) the next GEMM reads; gate and up are stored as T.
template <typename T, typename G>
void swiglu_backward(const float* dout, const T* gate, const T* up, G* dgate, G* dup, int64_t n);

// The f32 form.
inline void swiglu_backward(const float* dout, const float* gate, const float* up, float* dgate, float* dup, int64_t n) {
  swiglu_backward<float, float>(dout, gate, up, dgate, dup, n);
}

}  // namespace lora
