#pragma once
// bf16 tile products on Intel AMX (the TMUL unit: 16 x 32 bf16 times 32 x 16 bf16 into 16 x 16 f32 per
// instruction), or without AMX on AVX512-BF16 (AMD Zen 4/5, Cooper Lake), for attention's 64 x 64 blocks on
// the bf16 path:
//
//   C[M,N] = A[M,K] · B[K,N]  (+ C when accumulate),   M, N, K multiples of 32, fp32 accumulation
//
// A is bf16, row-major. B is bf16 in the pair layout the TMUL reads ("VNNI"): row i of the packed matrix
// holds, for every column n, the two values B[2i][n] and B[2i+1][n] side by side, so it is K/2 rows of 2N
// bf16. The packers below build A and B blocks (zero-padded to the multiples of 32) from f32 or bf16
// sources, transposed or not.
//
// amx_available() is false where the compiler did not target AMX (-march without amx-tile/amx-bf16) or the
// kernel refuses the tile state; callers then keep their AVX-512 / scalar path.
#include <cstdint>

#include "core/dtype.h"

namespace lora {

bool amx_available();

// True where amx_gemm runs on hardware products: AMX, or without it AVX512-BF16's vdpbf16ps (16 bf16 pairs
// per instruction into fp32 lanes, the same pair layout of B); false where only the scalar stand-in is left.
bool bf16_tiles_fast();

// Loads the tile configuration amx_gemm expects into the calling thread's tile state: once per thread
// before its products (other code, oneDNN's kernels, reconfigures or releases the tiles in between).
void amx_configure();

void amx_gemm(int64_t M, int64_t N, int64_t K, const bf16* a, int64_t lda, const bf16* b_pairs, float* c, int64_t ldc,
              bool accumulate);

// A block [M_pad x K_pad] (leading dimension K_pad) from op(X)'s [rows x cols] (X row-major with leading
// dimension ld; with transpose, op(X) = Xᵀ, X being [cols x rows]); the padding is zero.
template <typename T>
void pack_a(const T* x, int64_t ld, bool transpose, int64_t rows, int64_t cols, int64_t m_pad, int64_t k_pad, bf16* out);

// B block in pairs (K_pad/2 rows of 2·N_pad) from op(X)'s [k x n]: X row-major [k x n] (transpose false) or
// [n x k] (transpose true: B = Xᵀ, as Kᵀ in Q·Kᵀ); the padding is zero.
template <typename T>
void pack_b(const T* x, int64_t ld, bool transpose, int64_t k, int64_t n, int64_t k_pad, int64_t n_pad, bf16* out);

}  // namespace lora
