#include "formats/ggml_types.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"

namespace lora {

std::optional<GGMLTypeTraits> ggml_type_traits(uint32_t type) {
  // Numbering and block layouts from ggml.h / ggml-common.h; gaps are types ggml removed.
  switch (type) {
    case 0: return GGMLTypeTraits{"F32", 1, 4};
    case 1: return GGMLTypeTraits{"F16", 1, 2};
    case 2: return GGMLTypeTraits{"Q4_0", 32, 18};
    case 3: return GGMLTypeTraits{"Q4_1", 32, 20};
    case 6: return GGMLTypeTraits{"Q5_0", 32, 22};
    case 7: return GGMLTypeTraits{"Q5_1", 32, 24};
    case 8: return GGMLTypeTraits{"Q8_0", 32, 34};
    case 9: return GGMLTypeTraits{"Q8_1", 32, 36};
    case 10: return GGMLTypeTraits{"Q2_K", 256, 84};
    case 11: return GGMLTypeTraits{"Q3_K", 256, 110};
    case 12: return GGMLTypeTraits{"Q4_K", 256, 144};
    case 13: return GGMLTypeTraits{"Q5_K", 256, 176};
    case 14: return GGMLTypeTraits{"Q6_K", 256, 210};
    case 15: return GGMLTypeTraits{"Q8_K", 256, 292};
    case 16: return GGMLTypeTraits{"IQ2_XXS", 256, 66};
    case 17: return GGMLTypeTraits{"IQ2_XS", 256, 74};
    case 18: return GGMLTypeTraits{"IQ3_XXS", 256, 98};
    case 19: return GGMLTypeTraits{"IQ1_S", 256, 50};
    case 20: return GGMLTypeTraits{"IQ4_NL", 32, 18};
    case 21: return GGMLTypeTraits{"IQ3_S", 256, 110};
    case 22: return GGMLTypeTraits{"IQ2_S", 256, 82};
    case 23: return GGMLTypeTraits{"IQ4_XS", 256, 136};
    case 24: return GGMLTypeTraits{"I8", 1, 1};
    case 25: return GGMLTypeTraits{"I16", 1, 2};
    case 26: return GGMLTypeTraits{"I32", 1, 4};
    case 27: return GGMLTypeTraits{"I64", 1, 8};
    case 28: return GGMLTypeTraits{"F64", 1, 8};
    case 29: return GGMLTypeTraits{"IQ1_M", 256, 56};
    case 30: return GGMLTypeTraits{"BF16", 1, 2};
    case 34: return GGMLTypeTraits{"TQ1_0", 256, 54};
    case 35: return GGMLTypeTraits{"TQ2_0", 256, 66};
    case 39: return GGMLTypeTraits{"MXFP4", 32, 17};
    default: return std::nullopt;
  }
}

namespace {

constexpr int64_t QK = 32;

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

}  // namespace

void dequantize_q8_0(const void* blocks, float* out, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, b += 34) {
    const float d = f16_to_f32(load_u16(b));
    const auto* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (int64_t j = 0; j < QK; ++j) out[i * QK + j] = float(qs[j]) * d;
  }
}

void dequantize_q4_0(const void* blocks, float* out, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, b += 18) {
    const float d = f16_to_f32(load_u16(b));
    const uint8_t* qs = b + 2;
    for (int64_t j = 0; j < QK / 2; ++j) {
      out[i * QK + j] = float(int(qs[j] & 0x0f) - 8) * d;
      out[i * QK + j + QK / 2] = float(int(qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_q4_1(const void* blocks, float* out, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, b += 20) {
    const float d = f16_to_f32(load_u16(b));
    const float m = f16_to_f32(load_u16(b + 2));
    const uint8_t* qs = b + 4;
    for (int64_t j = 0; j < QK / 2; ++j) {
      out[i * QK + j] = float(qs[j] & 0x0f) * d + m;
      out[i * QK + j + QK / 2] = float(qs[j] >> 4) * d + m;
    }
  }
}

void quantize_q8_0(const float* x, void* blocks, int64_t n) {
  auto* b = static_cast<uint8_t*>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, b += 34) {
    const float* xb = x + i * QK;
    float amax = 0.0f;
    for (int64_t j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(b, f32_to_f16(d));
    auto* qs = reinterpret_cast<int8_t*>(b + 2);
    for (int64_t j = 0; j < QK; ++j) qs[j] = int8_t(std::lround(xb[j] * id));
  }
}

void quantize_q4_0(const float* x, void* blocks, int64_t n) {
  auto* b = static_cast<uint8_t*>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, b += 18) {
    const float* xb = x + i * QK;
    // ggml keeps the sign of the largest-magnitude value so that it maps exactly onto code 0 (-8).
    float amax = 0.0f, max = 0.0f;
    for (int64_t j = 0; j < QK; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(b, f32_to_f16(d));
    uint8_t* qs = b + 2;
    for (int64_t j = 0; j < QK / 2; ++j) {
      const int lo = std::min(15, int(xb[j] * id + 8.5f));
      const int hi = std::min(15, int(xb[j + QK / 2] * id + 8.5f));
      qs[j] = uint8_t(lo | (hi << 4));
    }
  }
}

}  // namespace lora
