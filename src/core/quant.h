#pragma once
// Weight quantization as bitsandbytes does it (SPEC.md section 5), bit for bit:
//
//   NF4 / FP4   blocks of `blocksize` (64) consecutive elements of the row-major weight share one fp32
//               absmax; each element becomes the 4-bit code c minimizing |x·(1/absmax) − code[c]|, by
//               bitsandbytes' thresholds (a value exactly on a threshold takes the lower code, NaN of an
//               all-zero block code 0); two codes per byte, the first element in the high nibble.
//   double quantization   the absmax values minus their mean (offset) are themselves quantized to 8 bits
//               with the signed dynamic map, in blocks of 256 with one fp32 absmax each:
//               absmax_b = dynamic[q_b] · nested_absmax[b / 256] + offset.
//   INT8_ROW    LLM.int8()'s weight format: q = round(x · 127/absmax_row) per output row (SCB = absmax_row),
//               w = q · SCB · (1/127). The "blocks" of this int8 option are the rows, so checkpoints
//               bitsandbytes writes for load_in_8bit load unchanged.
//
// Dequantized values are fp32(code · absmax) like bitsandbytes' kernels, rounded to bf16 (nearest even)
// by the bf16 variants; the compute path dequantizes a panel at a time (core/matmul.cpp).
#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "core/tensor.h"

namespace lora {

struct QuantState {
  DType type = DType::NF4;    // NF4, FP4 or INT8_ROW
  int64_t blocksize = 64;     // 4-bit: elements per absmax; INT8_ROW: the row length
  Tensor absmax;              // f32 [blocks] (SCB for INT8_ROW), or u8 [blocks] when nested
  Tensor code;                // f32 [16] quant_map of a 4-bit type; empty for INT8_ROW
  bool nested = false;        // double quantization of absmax
  float offset = 0.0f;        // mean of the original absmax values
  int64_t nested_blocksize = 256;
  Tensor nested_absmax;       // f32 [ceil(blocks / nested_blocksize)]
  Tensor nested_code;         // f32 [256] the signed dynamic map
  DType source_dtype = DType::F32;  // the weight's dtype before quantization ("dtype" in bitsandbytes' state)

  int64_t blocks() const { return absmax.numel(); }
  // The fp32 absmax of block b (decoding the nested level when there is one).
  float block_absmax(int64_t b) const;
  // Memory the state occupies beside the packed codes (the code books quantize() shares between all
  // tensors are not counted; a loaded checkpoint's own are).
  size_t nbytes() const;
};

struct QuantConfig {
  DType type = DType::NF4;  // NF4, FP4 or INT8_ROW
  bool double_quant = true;  // 4-bit types only
  int64_t blocksize = 64;
};

// "nf4", "fp4", "int8" (INT8_ROW); throws lora::Error naming the valid choices otherwise.
DType quant_type_from_name(const std::string& name);
// "nf4", "fp4", "int8".
const char* quant_type_name(DType type);

// The code books: bitsandbytes' NF4 and FP4 values (quant_map) and the signed 8-bit dynamic map
// (create_dynamic_map(signed=True)), all fp32.
const std::array<float, 16>& nf4_code();
const std::array<float, 16>& fp4_code();
const std::array<float, 256>& dynamic_map();
// The same as f32 tensors that every state quantize() creates shares: NF4 or FP4 for the quant_map, U8
// for the dynamic map (a loaded state whose maps hold the same values may share them too).
const Tensor& shared_code(DType type);

// Quantizes a floating tensor (f32, bf16 or f16; INT8_ROW needs 2-D [rows, cols]) of any size.
Tensor quantize(const Tensor& w, const QuantConfig& config);
// The whole tensor as f32.
Tensor dequantize(const Tensor& q);
// Elements [begin, end) of the row-major order, as f32 or as bf16 bits.
void dequantize_range(const Tensor& q, int64_t begin, int64_t end, float* out);
void dequantize_range_bf16(const Tensor& q, int64_t begin, int64_t end, uint16_t* out);
void dequantize_range_bf16(const QuantState& s, DType type, const void* data, int64_t begin, int64_t end,
                           uint16_t* out);
// One element (tests, slow paths).
float dequantize_at(const Tensor& q, int64_t i);
float dequantize_at(const QuantState& s, DType type, const void* data, int64_t i);

// Resident bits per weight of a quantized tensor (codes + state).
double bits_per_weight(const Tensor& q);

}  // namespace lora
