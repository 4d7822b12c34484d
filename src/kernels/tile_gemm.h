#pragma once
// Products of small tiles that live in L1 (attention's blocks: 64 queries x 64 keys x head_dim), on the
// calling thread, without the per-call cost of a library GEMM:
//
//   C[M,N] = alpha · op(A)[M,K] · B[K,N]  (+ C when accumulate)
//
// op(A) is A [M, K] (element (m, k) at a[m·lda + k]) or, with trans_a, Aᵀ for A [K, M] (at a[k·lda + m]);
// B and C are row-major with leading dimensions ldb and ldc. f32, fp32 accumulation. Register-blocked
// AVX-512 (6 rows x 64 columns per step: each loaded row of B is reused by 6 broadcasts) where available.
#include <cstdint>

namespace lora {

void tile_gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool trans_a, const float* b, int64_t ldb,
               float* c, int64_t ldc, float alpha, bool accumulate);

// The naive loop, for tests.
void tile_gemm_reference(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool trans_a, const float* b,
                         int64_t ldb, float* c, int64_t ldc, float alpha, bool accumulate);

}  // namespace lora
