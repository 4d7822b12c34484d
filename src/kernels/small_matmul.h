#pragma once
// Matrix products of a few rows (decoding one token), the shapes of an adapter's A·x and B·u at decode
// time, where a library GEMM's dispatch costs more than the arithmetic:
//
//   C[M,N] = alpha * A[M,K] · op(B) + beta * C      (the interface of core/matmul.h)
//
// For M <= 4, A and B f32 or bf16 (fp32 accumulation, a bf16 operand widened exactly, the f32 one not
// rounded): with B transposed ([N,K], as u = x·Aᵀ with a long K), dot products of contiguous rows; with B
// plain ([K,N], as y += u·(Bᵀ) with K the rank), C's rows as sums of B's rows scaled by A's values. Every
// other product goes to matmul().
#include "core/matmul.h"

namespace lora {

void small_matmul(const MatView& a, bool trans_a, const MatView& b, bool trans_b, const MutMatView& c,
                  float alpha = 1.0f, float beta = 0.0f);

}  // namespace lora
