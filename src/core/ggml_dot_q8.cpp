// The decode-time product in integers, as llama.cpp computes it: the activation rows are rounded to int8 in
// blocks of 32 (scale dx = absmax / 127, the block's sums kept), and a weight row of Q8_0, Q4_K or Q6_K meets them
// in 8-bit multiply-adds (AVX-512 VNNI vpdpbusd, 64 products per instruction) with fp32 only per block:
//
//   Q8_0 block b:   Σ w x ≈ d_b · dx_b · Σ q·xq                      (q signed: vpdpbusd takes (q ⊕ 0x80) = q + 128,
//                                                                    and the init −16·Σxq per lane removes the 128·Σxq)
//   Q4_K sub-block j (32 of 256): w = d·sc_j·q − dmin·m_j, q in 0..15 unsigned:
//                   Σ w x ≈ d·sc_j·dx_j·Σ q·xq − dmin·m_j·dx_j·Σxq
//   Q6_K group g (16 of 256): w = d·sc_g·(q − 32), q in 0..63 unsigned:
//                   Σ w x ≈ d·sc_g·dx·(Σ q·xq − 32·Σ₁₆xq)     (the −32·Σ₁₆xq as the init of the group's 4 lanes)
//
// The only rounding beyond the weight's own is x to 8 bits (relative error of a product ≲ 1/254 per value,
// averaging out over k), the same trade llama.cpp makes (its q8_0 / q8_K activations).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/ggml_quant.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include <immintrin.h>

#include "core/f16c.h"
#define LORA_GGML_VNNI 1
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's AVX-512 headers, see quant_kernels.cpp
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace lora {

void quantize_rows_q8(const float* x, int64_t x_stride, int64_t m, int64_t k, Q8Rows& out) {
  out.m = m;
  out.k = k;
  const int64_t nb = k / 32;
  out.q.resize(size_t(m * k));
  out.d.resize(size_t(m * nb));
  out.sum.resize(size_t(m * nb));
  out.dsum.resize(size_t(m * nb));
  out.sum16.resize(size_t(m * nb * 2));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t b = 0; b < nb; ++b) {
      const float* v = x + r * x_stride + b * 32;
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(v[i]));
      const float d = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      int8_t* q = out.q.data() + r * k + b * 32;
      int32_t s = 0;
      for (int i = 0; i < 32; ++i) {
        q[i] = int8_t(std::nearbyint(v[i] * inv));
        s += q[i];
        if (i == 15) out.sum16[size_t(r * nb + b) * 2] = s;
      }
      out.sum16[size_t(r * nb + b) * 2 + 1] = s - out.sum16[size_t(r * nb + b) * 2];
      out.d[size_t(r * nb + b)] = d;
      out.sum[size_t(r * nb + b)] = s;
      out.dsum[size_t(r * nb + b)] = d * float(s);
    }
}

#ifdef LORA_GGML_VNNI
namespace {

inline float half(const uint8_t* p) { return f16c_load(p); }

// Two 8-lane halves: a in lanes 0-7, b in lanes 8-15.
inline __m512 halves(float a, float b) { return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1); }
inline __m512i halves(int32_t a, int32_t b) {
  return _mm512_inserti32x8(_mm512_set1_epi32(a), _mm256_set1_epi32(b), 1);
}

template <int M>
void dot_q8_0(const uint8_t* row, const Q8Rows& x, float* out) {
  const int64_t nb = x.k / 32;
  constexpr size_t kBlock = 34;  // fp16 d + 32 int8
  const __m512i flip = _mm512_set1_epi8(char(0x80));
  __m512 acc[M];
  for (int r = 0; r < M; ++r) acc[r] = _mm512_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const uint8_t* w0 = row + size_t(b) * kBlock;
    const uint8_t* w1 = w0 + kBlock;
    const __m512i w = _mm512_xor_si512(
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + 2))),
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1 + 2)), 1),
        flip);
    const __m512 dw = halves(half(w0), half(w1));
    for (int r = 0; r < M; ++r) {
      const size_t at = size_t(r) * size_t(nb) + size_t(b);
      const __m512i xq = _mm512_loadu_si512(x.q.data() + r * x.k + b * 32);
      const __m512i dp = _mm512_dpbusd_epi32(halves(-16 * x.sum[at], -16 * x.sum[at + 1]), w, xq);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_mul_ps(dw, halves(x.d[at], x.d[at + 1])), acc[r]);
    }
  }
  float tail[M] = {};
  for (; b < nb; ++b) {  // an odd last block
    const uint8_t* w0 = row + size_t(b) * kBlock;
    const auto* q = reinterpret_cast<const int8_t*>(w0 + 2);
    for (int r = 0; r < M; ++r) {
      const int8_t* xq = x.q.data() + r * x.k + b * 32;
      int32_t s = 0;
      for (int i = 0; i < 32; ++i) s += int32_t(q[i]) * xq[i];
      tail[r] += half(w0) * x.d[size_t(r * nb + b)] * float(s);
    }
  }
  for (int r = 0; r < M; ++r) out[r] = _mm512_reduce_add_ps(acc[r]) + tail[r];
}

template <int M>
void dot_q4_k(const uint8_t* row, const Q8Rows& x, float* out) {
  const int64_t nsb = x.k / 256, nb = x.k / 32;
  constexpr size_t kBlock = 144;  // d, dmin (fp16), 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
  const __m512i low = _mm512_set1_epi8(0x0F);
  __m512 acc[M];
  float mins[M] = {};
  for (int r = 0; r < M; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t s = 0; s < nsb; ++s) {
    const uint8_t* blk = row + size_t(s) * kBlock;
    const float d = half(blk), dmin = half(blk + 2);
    const uint8_t* sc = blk + 4;
    uint8_t scale[8], mn[8];
    for (int j = 0; j < 4; ++j) {
      scale[j] = sc[j] & 63;
      mn[j] = sc[j + 4] & 63;
      scale[j + 4] = uint8_t((sc[j + 8] & 0xF) | ((sc[j] >> 6) << 4));
      mn[j + 4] = uint8_t((sc[j + 8] >> 4) | ((sc[j + 4] >> 6) << 4));
    }
    const uint8_t* qs = blk + 16;
    for (int c = 0; c < 4; ++c) {  // 64 values: sub-block 2c in the low nibbles, 2c+1 in the high ones
      const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
      const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(packed), _mm256_srli_epi16(packed, 4), 1);
      const __m512i w = _mm512_and_si512(both, low);
      const __m512 dsc = halves(d * float(scale[2 * c]), d * float(scale[2 * c + 1]));
      for (int r = 0; r < M; ++r) {
        const size_t at = size_t(r) * size_t(nb) + size_t(s * 8 + 2 * c);
        const __m512i xq = _mm512_loadu_si512(x.q.data() + r * x.k + s * 256 + c * 64);
        const __m512i dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, xq);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_mul_ps(dsc, halves(x.d[at], x.d[at + 1])), acc[r]);
      }
    }
    for (int r = 0; r < M; ++r) {
      const float* ds = x.dsum.data() + r * nb + s * 8;
      float m = 0.0f;
      for (int j = 0; j < 8; ++j) m += float(mn[j]) * ds[j];
      mins[r] += dmin * m;
    }
  }
  for (int r = 0; r < M; ++r) out[r] = _mm512_reduce_add_ps(acc[r]) - mins[r];
}

template <int M>
void dot_q6_k(const uint8_t* row, const Q8Rows& x, float* out) {
  const int64_t nsb = x.k / 256, nb = x.k / 32;
  constexpr size_t kBlock = 210;  // ql[128] (low 4 bits), qh[64] (high 2 bits), 16 int8 scales, fp16 d
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);  // a group per 4 lanes
  __m512 acc[M];
  for (int r = 0; r < M; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t s = 0; s < nsb; ++s) {
    const uint8_t* blk = row + size_t(s) * kBlock;
    const float d = half(blk + 208);
    const __m512 sc = _mm512_mul_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                                            _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 192)))));
    for (int h = 0; h < 2; ++h) {  // 128 values: ql[64 h .. 64 h + 63], qh[32 h .. 32 h + 31]
      const __m512i ql = _mm512_loadu_si512(blk + 64 * h);
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h));
      // values 0-31 take qh bits 0-1, 32-63 bits 2-3, 64-95 bits 4-5, 96-127 bits 6-7, each moved to bits 4-5
      const __m512i hi_a = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_slli_epi16(qh, 4)), _mm256_slli_epi16(qh, 2), 1);
      const __m512i hi_b = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
      const __m512i w[2] = {_mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(hi_a, m30)),
                            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), _mm512_and_si512(hi_b, m30))};
      for (int c = 0; c < 2; ++c) {  // 64 values: groups 8h + 4c .. + 3, x blocks 4h + 2c, + 1
        const int g = 8 * h + 4 * c;
        const __m512 scale = _mm512_permutexvar_ps(_mm512_add_epi32(spread, _mm512_set1_epi32(g)), sc);
        for (int r = 0; r < M; ++r) {
          const size_t at = size_t(r) * size_t(nb) + size_t(s * 8 + g / 2);
          const __m512i sum16 = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.sum16.data() + 2 * at)));
          const __m512i init = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_permutexvar_epi32(spread, sum16), 3));
          const __m512i xq = _mm512_loadu_si512(x.q.data() + r * x.k + s * 256 + g * 16);
          const __m512i dp = _mm512_dpbusd_epi32(init, w[c], xq);
          acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_mul_ps(scale, halves(x.d[at], x.d[at + 1])), acc[r]);
        }
      }
    }
  }
  for (int r = 0; r < M; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}

template <int M>
bool dispatch(DType t, const uint8_t* row, const Q8Rows& x, float* out) {
  switch (t) {
    case DType::Q8_0: dot_q8_0<M>(row, x, out); return true;
    case DType::Q4_K: dot_q4_k<M>(row, x, out); return true;
    case DType::Q6_K: dot_q6_k<M>(row, x, out); return true;
    default: return false;
  }
}

}  // namespace
#endif

bool has_q8_dot(DType t) {
#ifdef LORA_GGML_VNNI
  // LORA_EXACT_DECODE=1 keeps x in fp32 (the exact product of ggml_dot_rows), to compare or debug.
  static const bool exact = [] {
    const char* e = std::getenv("LORA_EXACT_DECODE");
    return e && std::string(e) == "1";
  }();
  return !exact && (t == DType::Q8_0 || t == DType::Q4_K || t == DType::Q6_K);
#else
  (void)t;
  return false;
#endif
}

bool ggml_dot_rows_q8(DType t, const void* row, const Q8Rows& x, float* out) {
#ifdef LORA_GGML_VNNI
  const auto* b = static_cast<const uint8_t*>(row);
  switch (x.m) {
    case 1: return dispatch<1>(t, b, x, out);
    case 2: return dispatch<2>(t, b, x, out);
    case 3: return dispatch<3>(t, b, x, out);
    case 4: return dispatch<4>(t, b, x, out);
    default: return false;
  }
#else
  (void)t, (void)row, (void)x, (void)out;
  return false;
#endif
}

}  // namespace lora
