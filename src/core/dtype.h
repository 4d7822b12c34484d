#pragma once
// Element types of tensors and the scalar conversions between them.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace lora {

// NF4, FP4 and INT8_ROW are bitsandbytes' quantized weight formats (core/quant.h); Q4_0 ... IQ4_XS are
// ggml's block formats as GGUF files store them (core/ggml_quant.h). A tensor of any of them holds packed
// codes and carries the QuantState that decodes them.
enum class DType : uint8_t {
  F32, F16, BF16, I32, I64, U8, I8, NF4, FP4, INT8_ROW,
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS,
};

// Bytes per element; 0 for the 4-bit and ggml block types, whose storage is dtype_nbytes().
size_t dtype_size(DType t);
// Bytes that n elements occupy: two 4-bit codes per byte (an odd count rounds up); for a ggml block
// type n / block_elements whole blocks (n must be a multiple of the block).
size_t dtype_nbytes(DType t, int64_t n);
bool is_quantized(DType t);
// One of ggml's block types (Q4_0 ... IQ4_XS).
bool is_ggml_quant(DType t);
const char* dtype_name(DType t);  // "f32", "bf16", "nf4", "q4_k", ...
// Parses safetensors-style ("F32", "BF16") and lower-case names; throws lora::Error otherwise.
DType dtype_from_name(const std::string& name);

// The bits of a bfloat16 value, as bf16 tensors store them (kernels templated on their storage type take
// float or bf16).
using bf16 = uint16_t;

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even, as PyTorch and oneDNN do; NaN stays NaN.
// Branch-free, so that loops of it vectorize.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
  return uint16_t(nan ? (bits >> 16) | 0x40 : rounded);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Bulk conversions (n elements).
void convert_to_f32(DType src_type, const void* src, float* dst, size_t n);
void convert_from_f32(const float* src, DType dst_type, void* dst, size_t n);

}  // namespace lora
