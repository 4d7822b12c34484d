#include "kernels/amx_gemm.h"

#include <cstring>
#include <type_traits>

#include "kernels/simd.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define LORA_AMX 1
#endif

namespace lora {

namespace {

template <typename T>
bf16 as_bf16(T v) {
  if constexpr (std::is_same_v<T, bf16>)
    return v;
  else
    return f32_to_bf16(v);
}

}  // namespace

template <typename T>
void pack_a(const T* x, int64_t ld, bool transpose, int64_t rows, int64_t cols, int64_t m_pad, int64_t k_pad, bf16* out) {
  for (int64_t i = 0; i < m_pad; ++i) {
    bf16* o = out + i * k_pad;
    if (i >= rows) {
      std::memset(o, 0, size_t(k_pad) * sizeof(bf16));
      continue;
    }
    if (!transpose) {
      if constexpr (std::is_same_v<T, bf16>)
        std::memcpy(o, x + i * ld, size_t(cols) * sizeof(bf16));
      else
        convert_from_f32(x + i * ld, DType::BF16, o, size_t(cols));
    } else {
      for (int64_t j = 0; j < cols; ++j) o[j] = as_bf16(x[j * ld + i]);
    }
    std::memset(o + cols, 0, size_t(k_pad - cols) * sizeof(bf16));
  }
}

template <typename T>
void pack_b(const T* x, int64_t ld, bool transpose, int64_t k, int64_t n, int64_t k_pad, int64_t n_pad, bf16* out) {
  // out[(i / 2) · 2·n_pad + 2·j + i % 2] = B[i][j]
  std::memset(out, 0, size_t(k_pad * n_pad) * sizeof(bf16));
  if (!transpose) {
#ifdef LORA_SIMD_AVX512
    // two rows at a time: 16 values of each, widened to 32 bits and merged, are 16 pairs
    for (int64_t i = 0; i < k; i += 2) {
      const T* r0 = x + i * ld;
      const T* r1 = i + 1 < k ? r0 + ld : nullptr;
      uint32_t* o = reinterpret_cast<uint32_t*>(out + (i / 2) * 2 * n_pad);
      for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = simd::first_lanes(n - j);
        const __m512i lo = _mm512_cvtepu16_epi32(simd::to_bf16(simd::load(r0 + j, m)));
        const __m512i hi = r1 ? _mm512_slli_epi32(_mm512_cvtepu16_epi32(simd::to_bf16(simd::load(r1 + j, m))), 16)
                              : _mm512_setzero_si512();
        _mm512_mask_storeu_epi32(o + j, m, _mm512_or_si512(lo, hi));
      }
    }
    return;
#endif
    for (int64_t i = 0; i < k; ++i) {
      bf16* o = out + (i / 2) * 2 * n_pad + (i % 2);
      const T* row = x + i * ld;
      for (int64_t j = 0; j < n; ++j) o[2 * j] = as_bf16(row[j]);
    }
    return;
  }
  // B = Xᵀ with X [n x k]: the pair (B[2i][j], B[2i+1][j]) = (X[j][2i], X[j][2i+1]) is adjacent in X, so
  // for bf16 X this is a transpose of 32-bit words
  if constexpr (std::is_same_v<T, bf16>) {
    if (k % 2 == 0) {
      uint32_t* o = reinterpret_cast<uint32_t*>(out);
      for (int64_t j = 0; j < n; ++j) {
        const T* row = x + j * ld;
        for (int64_t i = 0; i < k / 2; ++i) {
          uint32_t w;
          std::memcpy(&w, row + 2 * i, 4);
          o[i * n_pad + j] = w;
        }
      }
      return;
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    const T* row = x + j * ld;
    for (int64_t i = 0; i < k; ++i) out[(i / 2) * 2 * n_pad + 2 * j + (i % 2)] = as_bf16(row[i]);
  }
}

template void pack_a<float>(const float*, int64_t, bool, int64_t, int64_t, int64_t, int64_t, bf16*);
template void pack_a<bf16>(const bf16*, int64_t, bool, int64_t, int64_t, int64_t, int64_t, bf16*);
template void pack_b<float>(const float*, int64_t, bool, int64_t, int64_t, int64_t, int64_t, bf16*);
template void pack_b<bf16>(const bf16*, int64_t, bool, int64_t, int64_t, int64_t, int64_t, bf16*);

#ifdef LORA_AMX

namespace {

struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Every tile 16 rows of 64 bytes: C tiles 0-3 (16 x 16 f32), A tiles 4-5 (16 x 32 bf16), B tiles 6-7 (16
// pair-rows x 16 columns).
void configure_tiles() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  // GCC 12 does not tell the optimizer that ldtilecfg reads the struct, and drops the stores above without
  // this barrier (the tiles then stay unconfigured: a fault at the first tile load).
  asm volatile("" : : "r"(&cfg) : "memory");
  _tile_loadconfig(&cfg);
}

bool request_tile_state() {
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

}  // namespace

bool amx_available() {
  static const bool ok = request_tile_state();
  return ok;
}

void amx_configure() {
  if (amx_available()) configure_tiles();
}

static void amx_gemm_tiles(int64_t M, int64_t N, int64_t K, const bf16* a, int64_t lda, const bf16* b_pairs, float* c,
                           int64_t ldc, bool accumulate) {
  const int64_t a_stride = lda * 2, b_stride = N * 4, c_stride = ldc * 4;  // bytes per row
  for (int64_t m = 0; m < M; m += 32)
    for (int64_t n = 0; n < N; n += 32) {
      float* c00 = c + m * ldc + n;
      if (accumulate) {
        _tile_loadd(0, c00, c_stride);
        _tile_loadd(1, c00 + 16, c_stride);
        _tile_loadd(2, c00 + 16 * ldc, c_stride);
        _tile_loadd(3, c00 + 16 * ldc + 16, c_stride);
      } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      }
      for (int64_t k = 0; k < K; k += 32) {
        _tile_loadd(4, a + m * lda + k, a_stride);
        _tile_loadd(5, a + (m + 16) * lda + k, a_stride);
        _tile_loadd(6, b_pairs + (k / 2) * 2 * N + 2 * n, b_stride);
        _tile_loadd(7, b_pairs + (k / 2) * 2 * N + 2 * (n + 16), b_stride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, c00, c_stride);
      _tile_stored(1, c00 + 16, c_stride);
      _tile_stored(2, c00 + 16 * ldc, c_stride);
      _tile_stored(3, c00 + 16 * ldc + 16, c_stride);
    }
}

#endif

#ifndef LORA_AMX
bool amx_available() { return false; }
void amx_configure() {}
#endif

#if defined(__AVX512BF16__) && defined(LORA_SIMD_AVX512)
#define LORA_DPBF16 1

namespace {

// Without AMX: the same product on AVX512-BF16's vdpbf16ps, which adds, in each of 16 fp32 lanes, the two
// products of a bf16 pair. A register block of MR rows x 16·NV columns of C: per pair-row i of B, NV vector
// loads of B's pairs, and for every row the pair (A[r][2i], A[r][2i+1]) broadcast to all lanes.
template <int MR, int NV>
void dpbf16_block(int64_t K, const bf16* a, int64_t lda, const bf16* b_pairs, int64_t N, float* c, int64_t ldc,
                  bool accumulate) {
  __m512 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = accumulate ? _mm512_loadu_ps(c + r * ldc + 16 * v) : _mm512_setzero_ps();
  for (int64_t i = 0; i < K / 2; ++i) {
    const bf16* row = b_pairs + i * 2 * N;
    __m512bh b[NV];
    for (int v = 0; v < NV; ++v) b[v] = (__m512bh)_mm512_loadu_si512(row + 32 * v);
    for (int r = 0; r < MR; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + r * lda + 2 * i, 4);
      const __m512bh ar = (__m512bh)_mm512_set1_epi32(pair);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], ar, b[v]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
}

void dpbf16_gemm(int64_t M, int64_t N, int64_t K, const bf16* a, int64_t lda, const bf16* b_pairs, float* c, int64_t ldc,
                 bool accumulate) {
  // 4 x 64 where N allows (16 accumulators, 4 loads and 4 broadcasts per 16 products), else 8 x 32
  for (int64_t n = 0; n < N; n += N % 64 == 0 ? 64 : 32)
    for (int64_t m = 0; m < M; m += N % 64 == 0 ? 4 : 8) {
      if (N % 64 == 0)
        dpbf16_block<4, 4>(K, a + m * lda, lda, b_pairs + 2 * n, N, c + m * ldc + n, ldc, accumulate);
      else
        dpbf16_block<8, 2>(K, a + m * lda, lda, b_pairs + 2 * n, N, c + m * ldc + n, ldc, accumulate);
    }
}

}  // namespace

#endif

bool bf16_tiles_fast() {
#ifdef LORA_DPBF16
  return true;
#else
  return amx_available();
#endif
}

// The scalar form of amx_gemm: where neither AMX nor AVX512-BF16 is compiled (or AMX's tile state is refused
// and AVX512-BF16 is not compiled).
static void amx_gemm_scalar(int64_t M, int64_t N, int64_t K, const bf16* a, int64_t lda, const bf16* b_pairs, float* c,
                            int64_t ldc, bool accumulate) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      float acc = accumulate ? c[m * ldc + n] : 0.0f;
      for (int64_t k = 0; k < K; ++k)
        acc += bf16_to_f32(a[m * lda + k]) * bf16_to_f32(b_pairs[(k / 2) * 2 * N + 2 * n + (k % 2)]);
      c[m * ldc + n] = acc;
    }
}

void amx_gemm(int64_t M, int64_t N, int64_t K, const bf16* a, int64_t lda, const bf16* b_pairs, float* c, int64_t ldc,
              bool accumulate) {
#ifdef LORA_AMX
  if (amx_available()) return amx_gemm_tiles(M, N, K, a, lda, b_pairs, c, ldc, accumulate);
#endif
#ifdef LORA_DPBF16
  return dpbf16_gemm(M, N, K, a, lda, b_pairs, c, ldc, accumulate);
#endif
  amx_gemm_scalar(M, N, K, a, lda, b_pairs, c, ldc, accumulate);
}

}  // namespace lora
