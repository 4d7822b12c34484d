// Vectorized decoding of ggml's common block types, 16 values per AVX-512 register, computing exactly the
// reference's fp32 operations (a multiply and a subtract, never fused), so the bits match
// ggml_dequantize_reference. The other types, and CPUs without AVX-512, take the reference decoder.
#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/ggml_quant.h"

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define LORA_GGML_AVX512 1
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's AVX-512 headers, see quant_kernels.cpp
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace lora {

#ifdef LORA_GGML_AVX512
namespace {

inline float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// 16 unsigned bytes as floats.
inline __m512 u8x16(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)); }
inline __m512 i8x16(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)); }
inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// d·q − m for 16 codes.
inline void store_dq_m(float* y, __m512 q, __m512 d, __m512 m) { _mm512_storeu_ps(y, _mm512_sub_ps(_mm512_mul_ps(d, q), m)); }

void decode_q8_0(const uint8_t* b, float* y) {
  const __m512 d = _mm512_set1_ps(half(b));
  _mm512_storeu_ps(y, _mm512_mul_ps(i8x16(load16(b + 2)), d));
  _mm512_storeu_ps(y + 16, _mm512_mul_ps(i8x16(load16(b + 18)), d));
}

void decode_q4_0(const uint8_t* b, float* y) {
  const __m512 d = _mm512_set1_ps(half(b));
  const __m128i qs = load16(b + 2), low = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  const __m128i lo = _mm_sub_epi8(_mm_and_si128(qs, low), eight);
  const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), low), eight);
  _mm512_storeu_ps(y, _mm512_mul_ps(i8x16(lo), d));
  _mm512_storeu_ps(y + 16, _mm512_mul_ps(i8x16(hi), d));
}

inline void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Q4_K and Q5_K: 4 groups of 64 (two sub-blocks of 32 each: low and high nibbles of 32 bytes).
template <bool kFifthBit> void decode_qk_nibbles(const uint8_t* b, float* y) {
  const float d = half(b), dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = kFifthBit ? b + 48 : b + 16;
  const __m128i low = _mm_set1_epi8(0x0F);
  for (int g = 0; g < 4; ++g, ql += 32, y += 64) {
    uint8_t sc1, m1, sc2, m2;
    scale_min_k4(2 * g, scales, sc1, m1);
    scale_min_k4(2 * g + 1, scales, sc2, m2);
    const __m512 d1 = _mm512_set1_ps(d * float(sc1)), mm1 = _mm512_set1_ps(dmin * float(m1));
    const __m512 d2 = _mm512_set1_ps(d * float(sc2)), mm2 = _mm512_set1_ps(dmin * float(m2));
    for (int h = 0; h < 2; ++h) {
      const __m128i q = load16(ql + 16 * h);
      __m128i lo = _mm_and_si128(q, low), hi = _mm_and_si128(_mm_srli_epi16(q, 4), low);
      if (kFifthBit) {
        const __m128i bits = load16(qh + 16 * h);
        const __m128i u1 = _mm_set1_epi8(char(1 << (2 * g))), u2 = _mm_set1_epi8(char(2 << (2 * g)));
        const __m128i sixteen = _mm_set1_epi8(16);
        lo = _mm_or_si128(lo, _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(bits, u1), u1), sixteen));
        hi = _mm_or_si128(hi, _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(bits, u2), u2), sixteen));
      }
      store_dq_m(y + 16 * h, u8x16(lo), d1, mm1);
      store_dq_m(y + 32 + 16 * h, u8x16(hi), d2, mm2);
    }
  }
}

void decode_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half(b + 208);
  const __m128i low = _mm_set1_epi8(0x0F), three = _mm_set1_epi8(3), bias = _mm_set1_epi8(32);
  for (int n = 0; n < 2; ++n, y += 128, ql += 64, qh += 32, sc += 8)
    for (int l = 0; l < 32; l += 16) {
      const int is = l / 16;
      const __m128i a = load16(ql + l), c = load16(ql + l + 32), h = load16(qh + l);
      auto code = [&](__m128i nib, int shift) {
        const __m128i high = _mm_and_si128(_mm_srli_epi16(h, shift), three);
        return _mm_sub_epi8(_mm_or_si128(nib, _mm_slli_epi16(high, 4)), bias);
      };
      const __m128i q1 = code(_mm_and_si128(a, low), 0), q2 = code(_mm_and_si128(c, low), 2);
      const __m128i q3 = code(_mm_and_si128(_mm_srli_epi16(a, 4), low), 4);
      const __m128i q4 = code(_mm_and_si128(_mm_srli_epi16(c, 4), low), 6);
      _mm512_storeu_ps(y + l, _mm512_mul_ps(_mm512_set1_ps(d * float(sc[is])), i8x16(q1)));
      _mm512_storeu_ps(y + l + 32, _mm512_mul_ps(_mm512_set1_ps(d * float(sc[is + 2])), i8x16(q2)));
      _mm512_storeu_ps(y + l + 64, _mm512_mul_ps(_mm512_set1_ps(d * float(sc[is + 4])), i8x16(q3)));
      _mm512_storeu_ps(y + l + 96, _mm512_mul_ps(_mm512_set1_ps(d * float(sc[is + 6])), i8x16(q4)));
    }
}

using BlockDecoder = void (*)(const uint8_t*, float*);

BlockDecoder fast_decoder(DType t) {
  switch (t) {
    case DType::Q8_0: return decode_q8_0;
    case DType::Q4_0: return decode_q4_0;
    case DType::Q4_K: return decode_qk_nibbles<false>;
    case DType::Q5_K: return decode_qk_nibbles<true>;
    case DType::Q6_K: return decode_q6_k;
    default: return nullptr;
  }
}

}  // namespace
#endif

void ggml_dequantize(DType t, const void* blocks, int64_t n, float* out) {
#ifdef LORA_GGML_AVX512
  if (const BlockDecoder decode = fast_decoder(t)) {
    const GGMLBlock g = ggml_block(t);
    if (n % g.elements != 0) fail("dequantize {}: {} values are not whole blocks of {}", dtype_name(t), n, g.elements);
    const auto* b = static_cast<const uint8_t*>(blocks);
    for (int64_t i = 0; i < n / g.elements; ++i) decode(b + size_t(i) * g.bytes, out + i * g.elements);
    return;
  }
#endif
  ggml_dequantize_reference(t, blocks, n, out);
}

namespace {

// Calls emit(values, first, count) for the decoded values [begin, end), a block at a time.
template <typename Emit> void for_each_block(DType t, const void* blocks, int64_t begin, int64_t end, Emit&& emit) {
  const GGMLBlock g = ggml_block(t);
  const auto* b = static_cast<const uint8_t*>(blocks);
  alignas(64) float tmp[256];
  for (int64_t i = begin; i < end;) {
    const int64_t blk = i / g.elements, first = blk * g.elements;
    const int64_t stop = std::min(end, first + g.elements);
    ggml_dequantize(t, b + size_t(blk) * g.bytes, g.elements, tmp);
    emit(tmp + (i - first), i, stop - i);
    i = stop;
  }
}

}  // namespace

void ggml_dequantize_range(DType t, const void* blocks, int64_t begin, int64_t end, float* out) {
  for_each_block(t, blocks, begin, end,
                 [&](const float* v, int64_t at, int64_t count) { std::memcpy(out + (at - begin), v, size_t(count) * 4); });
}

void ggml_dequantize_range_bf16(DType t, const void* blocks, int64_t begin, int64_t end, uint16_t* out) {
  for_each_block(t, blocks, begin, end, [&](const float* v, int64_t at, int64_t count) {
    uint16_t* o = out + (at - begin);
    int64_t j = 0;
#if defined(LORA_GGML_AVX512) && defined(__AVX512BF16__)
    for (; j + 32 <= count; j += 32)
      _mm512_storeu_si512(o + j, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(v + j + 16), _mm512_loadu_ps(v + j)));
#endif
    for (; j < count; ++j) o[j] = f32_to_bf16(v[j]);
  });
}

}  // namespace lora
