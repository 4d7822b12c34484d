// Vectorized decoding of ggml's block types (all but Q2_K and Q3_K), 16 values per AVX-512 register, computing exactly the
// reference's fp32 operations (a multiply and a subtract, never fused), so the bits match
// ggml_dequantize_reference. The other types, and CPUs without AVX-512, take the reference decoder.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "core/ggml_quant.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

#include "core/f16c.h"
#define LORA_GGML_AVX512 1
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's AVX-512 headers, see quant_kernels.cpp
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace lora {

#ifdef LORA_GGML_AVX512
namespace {

inline float half(const uint8_t* p) { return f16c_load(p); }

// 16 unsigned bytes as floats.
inline __m512 u8x16(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)); }
inline __m512 i8x16(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)); }
inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// Each decoder below hands the block's values to `emit(offset, v)` 16 at a time (v = values
// offset .. offset+15 of the block), computed exactly as the reference does; emitting into memory is
// the decoding, emitting into dot products is the decode-time matrix-vector product.

inline __m512 dq_m(__m512 q, __m512 d, __m512 m) { return _mm512_sub_ps(_mm512_mul_ps(d, q), m); }

template <typename Emit> inline void visit_q8_0(const uint8_t* b, Emit&& emit) {
  const __m512 d = _mm512_set1_ps(half(b));
  emit(0, _mm512_mul_ps(i8x16(load16(b + 2)), d));
  emit(16, _mm512_mul_ps(i8x16(load16(b + 18)), d));
}

template <typename Emit> inline void visit_q4_0(const uint8_t* b, Emit&& emit) {
  const __m512 d = _mm512_set1_ps(half(b));
  const __m128i qs = load16(b + 2), low = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  emit(0, _mm512_mul_ps(i8x16(_mm_sub_epi8(_mm_and_si128(qs, low), eight)), d));
  emit(16, _mm512_mul_ps(i8x16(_mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), low), eight)), d));
}

// The codes of a 32-value block from 16 bytes of nibbles: element j < 16 the low nibble of byte j,
// element j + 16 the high one.
inline __m128i low_nibbles(__m128i q) { return _mm_and_si128(q, _mm_set1_epi8(0x0F)); }
inline __m128i high_nibbles(__m128i q) { return _mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F)); }
// 16 in every byte whose bit is set in `bits` (Q5's fifth bit), else 0.
inline __m128i fifth_bit(uint32_t bits) { return _mm_and_si128(_mm_movm_epi8(__mmask16(bits & 0xFFFF)), _mm_set1_epi8(16)); }

template <typename Emit> inline void visit_q4_1(const uint8_t* b, Emit&& emit) {
  const __m512 d = _mm512_set1_ps(half(b)), m = _mm512_set1_ps(half(b + 2));
  const __m128i qs = load16(b + 4);
  emit(0, _mm512_add_ps(_mm512_mul_ps(u8x16(low_nibbles(qs)), d), m));
  emit(16, _mm512_add_ps(_mm512_mul_ps(u8x16(high_nibbles(qs)), d), m));
}

template <typename Emit> inline void visit_q5_0(const uint8_t* b, Emit&& emit) {
  const __m512 d = _mm512_set1_ps(half(b));
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const __m128i qs = load16(b + 6), sixteen = _mm_set1_epi8(16);
  emit(0, _mm512_mul_ps(i8x16(_mm_sub_epi8(_mm_or_si128(low_nibbles(qs), fifth_bit(qh)), sixteen)), d));
  emit(16, _mm512_mul_ps(i8x16(_mm_sub_epi8(_mm_or_si128(high_nibbles(qs), fifth_bit(qh >> 16)), sixteen)), d));
}

template <typename Emit> inline void visit_q5_1(const uint8_t* b, Emit&& emit) {
  const __m512 d = _mm512_set1_ps(half(b)), m = _mm512_set1_ps(half(b + 2));
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const __m128i qs = load16(b + 8);
  emit(0, _mm512_add_ps(_mm512_mul_ps(u8x16(_mm_or_si128(low_nibbles(qs), fifth_bit(qh))), d), m));
  emit(16, _mm512_add_ps(_mm512_mul_ps(u8x16(_mm_or_si128(high_nibbles(qs), fifth_bit(qh >> 16))), d), m));
}

// IQ4's non-linear values, looked up 16 at a time by byte shuffle.
inline __m128i iq4_values(__m128i codes) {
  const __m128i table = _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
  return _mm_shuffle_epi8(table, codes);
}

template <typename Emit> inline void visit_iq4_nl(const uint8_t* b, Emit&& emit) {
  const __m512 d = _mm512_set1_ps(half(b));
  const __m128i qs = load16(b + 2);
  emit(0, _mm512_mul_ps(d, i8x16(iq4_values(low_nibbles(qs)))));
  emit(16, _mm512_mul_ps(d, i8x16(iq4_values(high_nibbles(qs)))));
}

template <typename Emit> inline void visit_iq4_xs(const uint8_t* b, Emit&& emit) {
  const float d = half(b);
  uint16_t scales_h;
  std::memcpy(&scales_h, b + 2, 2);
  const uint8_t* scales_l = b + 4;
  const uint8_t* qs = b + 8;
#pragma GCC unroll 8
  for (int ib = 0; ib < 8; ++ib, qs += 16) {
    const int ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((scales_h >> (2 * ib)) & 3) << 4);
    const __m512 dl = _mm512_set1_ps(d * float(ls - 32));
    const __m128i q = load16(qs);
    emit(32 * ib, _mm512_mul_ps(dl, i8x16(iq4_values(low_nibbles(q)))));
    emit(32 * ib + 16, _mm512_mul_ps(dl, i8x16(iq4_values(high_nibbles(q)))));
  }
}

// The eight 6-bit scales and mins of a Q4_K / Q5_K block (get_scale_min_k4's packing), unpacked with
// 32-bit masks: bytes 0-7 of `sc` are the scales, of `mn` the mins.
inline void unpack_scales_mins_k4(const uint8_t* packed, uint32_t sc[2], uint32_t mn[2]) {
  uint32_t u[3];
  std::memcpy(u, packed, 12);
  constexpr uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, low2 = 0x03030303;
  sc[0] = u[0] & low6;
  sc[1] = (u[2] & low4) | (((u[0] >> 6) & low2) << 4);
  mn[0] = u[1] & low6;
  mn[1] = ((u[2] >> 4) & low4) | (((u[1] >> 6) & low2) << 4);
}

// Eight bytes as floats times s (one fp32 product each, as the reference's d * float(sc)).
inline __m512 scaled_u8x8(const uint32_t bytes[2], float s) {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes));
  return _mm512_castps256_ps512(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), _mm256_set1_ps(s)));
}

// Lane j of v in every lane.
inline __m512 lane(__m512 v, int j) { return _mm512_permutexvar_ps(_mm512_set1_epi32(j), v); }

// Q4_K and Q5_K: 4 groups of 64 (two sub-blocks of 32 each: low and high nibbles of 32 bytes).
template <bool kFifthBit, typename Emit> inline void visit_qk_nibbles(const uint8_t* b, Emit&& emit) {
  uint32_t sc[2], mn[2];
  unpack_scales_mins_k4(b + 4, sc, mn);
  const __m512 dsc = scaled_u8x8(sc, half(b)), dmn = scaled_u8x8(mn, half(b + 2));  // d·sc_j, dmin·m_j
  const uint8_t* qh = b + 16;
  const uint8_t* ql = kFifthBit ? b + 48 : b + 16;
  const __m128i low = _mm_set1_epi8(0x0F);
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g, ql += 32) {
    const __m512 d1 = lane(dsc, 2 * g), mm1 = lane(dmn, 2 * g), d2 = lane(dsc, 2 * g + 1), mm2 = lane(dmn, 2 * g + 1);
#pragma GCC unroll 2
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
      emit(64 * g + 16 * h, dq_m(u8x16(lo), d1, mm1));
      emit(64 * g + 32 + 16 * h, dq_m(u8x16(hi), d2, mm2));
    }
  }
}

template <typename Emit> inline void visit_q6_k(const uint8_t* b, Emit&& emit) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  // d·sc_i for the sixteen int8 scales at once (the reference's d * float(sc[i])).
  const __m512 dsc = _mm512_mul_ps(i8x16(load16(b + 192)), _mm512_set1_ps(half(b + 208)));
  const __m128i low = _mm_set1_epi8(0x0F), three = _mm_set1_epi8(3), bias = _mm_set1_epi8(32);
#pragma GCC unroll 2
  for (int n = 0; n < 2; ++n, ql += 64, qh += 32)
#pragma GCC unroll 2
    for (int l = 0; l < 32; l += 16) {
      const int is = 8 * n + l / 16;
      const __m128i a = load16(ql + l), c = load16(ql + l + 32), h = load16(qh + l);
      auto code = [&](__m128i nib, int shift) {
        const __m128i high = _mm_and_si128(_mm_srli_epi16(h, shift), three);
        return _mm_sub_epi8(_mm_or_si128(nib, _mm_slli_epi16(high, 4)), bias);
      };
      const __m128i q1 = code(_mm_and_si128(a, low), 0), q2 = code(_mm_and_si128(c, low), 2);
      const __m128i q3 = code(_mm_and_si128(_mm_srli_epi16(a, 4), low), 4);
      const __m128i q4 = code(_mm_and_si128(_mm_srli_epi16(c, 4), low), 6);
      const int base = 128 * n + l;
      emit(base, _mm512_mul_ps(lane(dsc, is), i8x16(q1)));
      emit(base + 32, _mm512_mul_ps(lane(dsc, is + 2), i8x16(q2)));
      emit(base + 64, _mm512_mul_ps(lane(dsc, is + 4), i8x16(q3)));
      emit(base + 96, _mm512_mul_ps(lane(dsc, is + 6), i8x16(q4)));
    }
}

// Calls visit(block, emit) with the visitor of type t; false when t has none (reference path).
template <typename Visit> bool with_visitor(DType t, Visit&& visit) {
  switch (t) {
    case DType::Q8_0: visit([](const uint8_t* b, auto&& e) { visit_q8_0(b, e); }); return true;
    case DType::Q4_0: visit([](const uint8_t* b, auto&& e) { visit_q4_0(b, e); }); return true;
    case DType::Q4_1: visit([](const uint8_t* b, auto&& e) { visit_q4_1(b, e); }); return true;
    case DType::Q5_0: visit([](const uint8_t* b, auto&& e) { visit_q5_0(b, e); }); return true;
    case DType::Q5_1: visit([](const uint8_t* b, auto&& e) { visit_q5_1(b, e); }); return true;
    case DType::IQ4_NL: visit([](const uint8_t* b, auto&& e) { visit_iq4_nl(b, e); }); return true;
    case DType::IQ4_XS: visit([](const uint8_t* b, auto&& e) { visit_iq4_xs(b, e); }); return true;
    case DType::Q4_K: visit([](const uint8_t* b, auto&& e) { visit_qk_nibbles<false>(b, e); }); return true;
    case DType::Q5_K: visit([](const uint8_t* b, auto&& e) { visit_qk_nibbles<true>(b, e); }); return true;
    case DType::Q6_K: visit([](const uint8_t* b, auto&& e) { visit_q6_k(b, e); }); return true;
    default: return false;
  }
}

}  // namespace
#endif

void ggml_dequantize(DType t, const void* blocks, int64_t n, float* out) {
  const GGMLBlock g = ggml_block(t);
  if (n % g.elements != 0) fail("dequantize {}: {} values are not whole blocks of {}", dtype_name(t), n, g.elements);
#ifdef LORA_GGML_AVX512
  const auto* b = static_cast<const uint8_t*>(blocks);
  const bool done = with_visitor(t, [&](auto visit) {
    for (int64_t i = 0; i < n / g.elements; ++i) {
      float* y = out + i * g.elements;
      visit(b + size_t(i) * g.bytes, [y](int off, __m512 v) { _mm512_storeu_ps(y + off, v); });
    }
  });
  if (done) return;
#endif
  ggml_dequantize_reference(t, blocks, n, out);
}

void ggml_dot_rows(DType t, const void* row, int64_t k, const float* x, int64_t x_stride, int64_t m, float* out) {
  const GGMLBlock g = ggml_block(t);
  if (k % g.elements != 0) fail("dot {}: {} values are not whole blocks of {}", dtype_name(t), k, g.elements);
  if (m < 1 || m > 4) fail("ggml_dot_rows: {} rows (1 to 4)", m);
  const auto* b = static_cast<const uint8_t*>(row);
#ifdef LORA_GGML_AVX512
  auto dot = [&](auto rows) {
    constexpr int M = decltype(rows)::value;
    // Four accumulators a row, chosen by the (unrolled, constant) offset: independent FMA chains.
    __m512 acc[M][4];
    for (int r = 0; r < M; ++r)
      for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_setzero_ps();
    const bool done = with_visitor(t, [&](auto visit) {
      for (int64_t i = 0; i < k / g.elements; ++i) {
        const float* xb = x + i * g.elements;
        visit(b + size_t(i) * g.bytes, [&](int off, __m512 v) {
          const int c = (off >> 4) & 3;
          for (int r = 0; r < M; ++r) acc[r][c] = _mm512_fmadd_ps(v, _mm512_loadu_ps(xb + r * x_stride + off), acc[r][c]);
        });
      }
    });
    if (done)
      for (int r = 0; r < M; ++r)
        out[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]), _mm512_add_ps(acc[r][2], acc[r][3])));
    return done;
  };
  using std::integral_constant;
  const bool done = m == 1 ? dot(integral_constant<int, 1>{}) : m == 2 ? dot(integral_constant<int, 2>{})
                  : m == 3 ? dot(integral_constant<int, 3>{}) : dot(integral_constant<int, 4>{});
  if (done) return;
#endif
  alignas(64) float w[256];
  for (int64_t r = 0; r < m; ++r) out[r] = 0.0f;
  for (int64_t i = 0; i < k / g.elements; ++i) {
    ggml_dequantize_reference(t, b + size_t(i) * g.bytes, g.elements, w);
    for (int64_t r = 0; r < m; ++r) {
      const float* xr = x + r * x_stride + i * g.elements;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < g.elements; ++j) s += w[j] * xr[j];
      out[r] += s;
    }
  }
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
#if defined(LORA_GGML_AVX512) && defined(__AVX512BF16__)
  // Whole blocks straight to bf16 in registers (the training panels); partial ones through fp32 below.
  const GGMLBlock g = ggml_block(t);
  if (begin % g.elements == 0 && end % g.elements == 0) {
    const auto* b = static_cast<const uint8_t*>(blocks);
    const bool done = with_visitor(t, [&](auto visit) {
      for (int64_t i = begin / g.elements; i < end / g.elements; ++i) {
        uint16_t* y = out + (i * g.elements - begin);
        visit(b + size_t(i) * g.bytes, [y](int off, __m512 v) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + off), (__m256i)_mm512_cvtneps_pbh(v));
        });
      }
    });
    if (done) return;
  }
#endif
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
