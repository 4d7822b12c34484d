// Decoding quantized weights to bf16 for the matrix multiply, vectorized with AVX-512 where the CPU has
// avx512_bf16 (the scalar loops below compute the same bits everywhere else).
//
// 4-bit: per block the 16 code values are scaled by the block's absmax once (fp32, as bitsandbytes
// multiplies code · absmax) and rounded to bf16 into one register; then every byte of codes becomes two
// bf16 values with one permute (vpermw) looking both nibbles up in that table.
#include <algorithm>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512BF16__)
#include <immintrin.h>
#define LORA_DEQUANT_AVX512 1
// GCC 12's AVX-512 headers initialize their "undefined" registers from themselves, which
// -Wmaybe-uninitialized reports at every inlined conversion intrinsic; the values are never read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "core/error.h"
#include "core/ggml_quant.h"
#include "core/quant.h"

namespace lora {

namespace {

void decode_4bit_scalar(const uint8_t* d, const float* code, float absmax, int64_t begin, int64_t end, uint16_t* out) {
  for (int64_t i = begin; i < end; ++i) {
    const uint8_t byte = d[i / 2];
    out[i - begin] = f32_to_bf16(code[i % 2 == 0 ? byte >> 4 : byte & 15] * absmax);
  }
}

void decode_int8_scalar(const int8_t* d, float scb, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(float(d[i]) * scb * (1.0f / 127.0f));
}

#ifdef LORA_DEQUANT_AVX512
// 64 elements (32 bytes of codes, `d` at an element index that is even) through the bf16 table.
inline void decode_4bit_64(const uint8_t* d, __m512i table, uint16_t* out) {
  const __m512i low4 = _mm512_set1_epi32(15);
  for (int half = 0; half < 2; ++half) {
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + 16 * half)));
    // dword j = byte j: its low 16 bits index the high nibble (element 2j), its high 16 bits the low one.
    const __m512i idx = _mm512_or_si512(_mm512_srli_epi32(v, 4), _mm512_slli_epi32(_mm512_and_si512(v, low4), 16));
    _mm512_storeu_si512(out + 32 * half, _mm512_permutexvar_epi16(idx, table));
  }
}

inline __m512i bf16_table(const __m512 code, float absmax) {
  const __m256bh t = _mm512_cvtneps_pbh(_mm512_mul_ps(code, _mm512_set1_ps(absmax)));
  return _mm512_zextsi256_si512((__m256i)t);
}

void decode_int8_avx512(const int8_t* d, float scb, int64_t n, uint16_t* out) {
  const __m512 s = _mm512_set1_ps(scb), inv127 = _mm512_set1_ps(1.0f / 127.0f);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    auto decode16 = [&](const int8_t* p) {
      const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
      return _mm512_mul_ps(_mm512_mul_ps(q, s), inv127);
    };
    const __m512bh v = _mm512_cvtne2ps_pbh(decode16(d + i + 16), decode16(d + i));
    _mm512_storeu_si512(out + i, (__m512i)v);
  }
  decode_int8_scalar(d + i, scb, n - i, out + i);
}
#endif

}  // namespace

void dequantize_range_bf16(const QuantState& s, DType type, const void* data, int64_t begin, int64_t end,
                           uint16_t* out) {
  if (is_ggml_quant(type)) return ggml_dequantize_range_bf16(type, data, begin, end, out);
  if (type == DType::INT8_ROW) {
    const auto* d = static_cast<const int8_t*>(data);
    const float* scb = s.absmax.f32();
    for (int64_t i = begin; i < end;) {
      const int64_t r = i / s.blocksize, row_end = std::min(end, (r + 1) * s.blocksize);
#ifdef LORA_DEQUANT_AVX512
      decode_int8_avx512(d + i, scb[r], row_end - i, out + (i - begin));
#else
      decode_int8_scalar(d + i, scb[r], row_end - i, out + (i - begin));
#endif
      i = row_end;
    }
    return;
  }
  const auto* d = static_cast<const uint8_t*>(data);
  const float* code = s.code.f32();
#ifdef LORA_DEQUANT_AVX512
  const __m512 code_v = _mm512_loadu_ps(code);
#endif
  for (int64_t i = begin; i < end;) {
    const int64_t b = i / s.blocksize, block_end = std::min(end, (b + 1) * s.blocksize);
    const float absmax = s.block_absmax(b);
#ifdef LORA_DEQUANT_AVX512
    if (i % 2 == 0 && block_end - i >= 64) {
      const __m512i table = bf16_table(code_v, absmax);
      for (; i + 64 <= block_end; i += 64) decode_4bit_64(d + i / 2, table, out + (i - begin));
    }
#endif
    decode_4bit_scalar(d, code, absmax, i, block_end, out + (i - begin));
    i = block_end;
  }
}

void dequantize_range_bf16(const Tensor& q, int64_t begin, int64_t end, uint16_t* out) {
  if (!q.quantized()) fail("dequantize: a {} tensor is not quantized", dtype_name(q.dtype()));
  if (begin < 0 || end > q.numel() || begin > end) fail("dequantize: range [{}, {}) outside {} elements", begin, end, q.numel());
  dequantize_range_bf16(*q.quant(), q.dtype(), q.data(), begin, end, out);
}

}  // namespace lora
