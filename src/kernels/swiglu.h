#pragma once
#include <cstdint>

namespace lora {

// out = silu(gate) * up, elementwise over n values; silu(g) = g / (1 + e^-g).
void swiglu_forward(const float* gate, const float* up, float* out, int64_t n);

}  // namespace lora
