#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace lora {

// out[i] = table[ids[i]] as f32, for a [vocab, dim] table in f32 or bf16. Ids out of range throw.
void embedding_forward(const Tensor& table, const int32_t* ids, int64_t n, float* out);

}  // namespace lora
