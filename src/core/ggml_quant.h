#pragma once
// ggml's block quantization formats, as GGUF files store them (layouts from ggml-common.h, formulas from
// ggml-quants.c's reference code). Every row of a weight is a whole number of blocks; a block decodes to
// `elements` consecutive values of the row. d, dmin, m: fp16; q: the unsigned code; all arithmetic fp32
// in the order written (no fused multiply-add), which is what makes the decoding bit-exact.
//
//   type    elems bytes  block layout                                   value
//   Q4_0     32    18    d, qs[16]                                      (q - 8)·d
//   Q4_1     32    20    d, m, qs[16]                                   q·d + m
//   Q5_0     32    22    d, qh[4], qs[16]                               (q - 16)·d
//   Q5_1     32    24    d, m, qh[4], qs[16]                            q·d + m
//   Q8_0     32    34    d, int8 qs[32]                                 q·d
//     (Q4/Q5: element j < 16 is the low nibble of qs[j], element j + 16 the high one; Q5's fifth bit of
//      element j is bit j of the little-endian 32-bit qh)
//   Q2_K    256    84    scales[16], qs[64], d, dmin                    (d·sc)·q − dmin·m, 16 sub-blocks of 16,
//                        sc/m = low/high nibble of scales[s]; q 2 bits, four 32-element groups per 32 bytes
//   Q3_K    256   110    hmask[32], qs[64], scales[12], d               (d·(sc − 32))·(q − 4·!hbit), 16 sub-blocks,
//                        6-bit sc packed: low 4 bits in scales[0..7] nibbles, high 2 bits in scales[8..11]
//   Q4_K    256   144    d, dmin, scales[12], qs[128]                   (d·sc)·q − dmin·m, 8 sub-blocks of 32,
//                        6-bit sc/m (get_scale_min_k4); each 32 bytes hold two sub-blocks as low/high nibbles
//   Q5_K    256   176    d, dmin, scales[12], qh[32], qs[128]           as Q4_K with a fifth bit from qh
//   Q6_K    256   210    ql[128], qh[64], int8 scales[16], d            (d·sc)·(q − 32), 16 sub-blocks of 16,
//                        q = 4 low bits from ql, 2 high bits from qh
//   IQ4_NL   32    18    d, qs[16]                                      d·kvalues[q] (nibbles as Q4_0)
//   IQ4_XS  256   136    d, scales_h(u16), scales_l[4], qs[128]         (d·(ls − 32))·kvalues[q], 8 sub-blocks
//                        of 32, 6-bit ls: 4 bits from scales_l, 2 from scales_h
//   kvalues = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace lora {

struct GGMLBlock {
  int64_t elements;    // values per block
  size_t bytes;        // bytes per block
  uint32_t ggml_type;  // the type's number in ggml.h / GGUF
};

// The block geometry of a ggml block type (is_ggml_quant(t)); throws lora::Error for any other dtype.
GGMLBlock ggml_block(DType t);
// The dtype of a ggml type number, if it is one of the block types this project decodes.
std::optional<DType> ggml_block_dtype(uint32_t ggml_type);

// Decodes n values (a multiple of the block) from `blocks`: ggml's reference formulas, one value at a
// time (the tests' ground truth).
void ggml_dequantize_reference(DType t, const void* blocks, int64_t n, float* out);
// The same bits, vectorized for the common types (AVX-512 where the CPU has it).
void ggml_dequantize(DType t, const void* blocks, int64_t n, float* out);

// out[r] = Σ_p x[r·x_stride + p] · w[p] for r < m (1 to 4) and w one row of k values (whole blocks) of
// type t: the decode-time product, each block decoded in registers and never stored.
void ggml_dot_rows(DType t, const void* row, int64_t k, const float* x, int64_t x_stride, int64_t m, float* out);

// The same product in integers where the CPU has AVX-512 VNNI, for Q8_0, Q4_K and Q6_K (has_q8_dot): the x rows
// rounded once to int8 blocks of 32 (quantize_rows_q8), each weight row then dotted with all of them by 8-bit
// multiply-adds, as llama.cpp's q8 activations do (ggml_dot_q8.cpp). Returns false for other types.
struct Q8Rows {
  int64_t m = 0, k = 0;
  std::vector<int8_t> q;    // [m, k]
  std::vector<float> d;     // [m, k / 32] scale of each block
  std::vector<int32_t> sum; // [m, k / 32] Σ q of each block
  std::vector<float> dsum;  // d · sum
  std::vector<int32_t> sum16;  // [m, k / 16] Σ q of each half block (Q6_K's scales are per 16)
};
void quantize_rows_q8(const float* x, int64_t x_stride, int64_t m, int64_t k, Q8Rows& out);
bool has_q8_dot(DType t);
bool ggml_dot_rows_q8(DType t, const void* row, const Q8Rows& x, float* out);

// Values [begin, end) of a row-major tensor stored as blocks (any range: partial blocks are decoded whole
// into a scratch block), as f32 or rounded to bf16 (nearest even).
void ggml_dequantize_range(DType t, const void* blocks, int64_t begin, int64_t end, float* out);
void ggml_dequantize_range_bf16(DType t, const void* blocks, int64_t begin, int64_t end, uint16_t* out);

// Encodes n values (a multiple of the block) as ggml's reference quantizers do without an importance
// matrix (what llama-quantize writes then). Non-finite input throws lora::Error.
void ggml_quantize(DType t, const float* x, int64_t n, void* blocks);

// A floating tensor (f32, bf16, f16) quantized row by row; its last dimension must be a multiple of the
// block (lora::Error otherwise).
Tensor ggml_quantize_tensor(const Tensor& w, DType t);
// A quantized tensor over blocks stored elsewhere (a mapped GGUF file), kept alive by `owner`.
Tensor ggml_tensor_view(DType t, std::vector<int64_t> shape, const void* blocks, std::shared_ptr<void> owner);

// The index of the first block whose fp16 scales (d, dmin, m) are NaN or infinite, if any.
std::optional<int64_t> ggml_first_nonfinite_block(DType t, const void* blocks, int64_t n_blocks);

}  // namespace lora
