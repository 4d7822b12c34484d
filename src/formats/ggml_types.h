#pragma once
// ggml tensor types: block geometry of every type a GGUF file may hold (so a reader can bounds-check
// tensors it cannot decode), and dequantization of the ones this project reads.
#include <cstddef>
#include <cstdint>
#include <optional>

namespace lora {

struct GGMLTypeTraits {
  const char* name;      // "F32", "Q8_0", ... as ggml spells them
  int64_t block_size;    // elements per block (1 for plain types)
  size_t type_size;      // bytes per block
};

// Traits of ggml type `type`, or nullopt for a number ggml does not define.
std::optional<GGMLTypeTraits> ggml_type_traits(uint32_t type);

// Q8_0: blocks of 32 elements, {f16 d; int8 qs[32]}, value = qs[i] * d.
// Q4_0: blocks of 32 elements, {f16 d; uint8 qs[16]}; element i < 16 is the low nibble of qs[i],
//       element i + 16 the high nibble; value = (q - 8) * d.
// Q4_1: blocks of 32 elements, {f16 d; f16 m; uint8 qs[16]}, nibbles as Q4_0; value = q * d + m.
// `n` must be a multiple of 32; `blocks` holds n / 32 blocks.
void dequantize_q8_0(const void* blocks, float* out, int64_t n);
void dequantize_q4_0(const void* blocks, float* out, int64_t n);
void dequantize_q4_1(const void* blocks, float* out, int64_t n);

// The inverse, for writers and tests: round-to-nearest like ggml's reference quantizers.
void quantize_q8_0(const float* x, void* blocks, int64_t n);
void quantize_q4_0(const float* x, void* blocks, int64_t n);

}  // namespace lora
