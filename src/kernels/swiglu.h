#pragma once
#include <cstdint>

namespace lora {

// out = silu(gate) ⊙ up, elementwise over n values; silu(g) = g·σ(g). out may alias gate.
void swiglu_forward(const float* gate, const float* up, float* out, int64_t n);

// dgate = dout ⊙ up ⊙ σ(g)(1 + g(1 − σ(g)));  dup = dout ⊙ silu(g). Overwrites dgate and dup.
void swiglu_backward(const float* dout, const float* gate, const float* up, float* dgate, float* dup, int64_t n);

}  // namespace lora
