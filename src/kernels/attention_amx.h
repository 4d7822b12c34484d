#pragma once
// attention_forward / attention_backward (kernels/attention.h) for bf16 activations with the tile products on
// AMX (kernels/amx_gemm.h): the same blocks, online softmax and statistics as the AVX-512 form, with the
// operands of every product in bf16 (as FlashAttention's bf16 kernels hold P and dS) and fp32 accumulation.
// K and V (forward), and Q, Qᵀ, dO, dOᵀ (backward) are packed into tile layout once per call, not once per
// pair of blocks; the key-block accumulators of the backward are kept transposed (dKᵀ = Qᵀ dS, dVᵀ = dOᵀ P)
// so that every operand packed per pair of blocks is a plain row-wise conversion of a score tile.
#include <cstdint>

#include "core/dtype.h"
#include "kernels/attention.h"

namespace lora {

// AMX is compiled in and granted, and head_dim fits the padded tiles.
bool attention_amx_usable(const AttentionShape& shape);

void attention_forward_amx(const bf16* q, const bf16* keys, const bf16* values, bf16* out, int64_t T, int64_t pos0,
                           const AttentionShape& shape, float* stats, int64_t batch, int64_t kv_stride);

void attention_backward_amx(const float* dout, const bf16* q, const bf16* keys, const bf16* values, const bf16* out,
                            const float* stats, float* dq, float* dk, float* dv, int64_t T, const AttentionShape& shape,
                            int64_t batch);

}  // namespace lora
