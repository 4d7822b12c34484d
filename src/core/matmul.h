#pragma once
// The one matrix-multiply interface every layer uses:
//
//   C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C
//
// op(X) is X or Xᵀ. Operands are strided 2-D views (row stride in elements), so a head's slice of a
// [tokens, heads*head_dim] activation or a transposed weight is used in place. A and B may be f32 or
// bf16 (fp32 accumulation); C is f32. Backed by oneDNN; matmul_reference() is the naive loop the tests
// compare against.
//
// An operand may also be a whole quantized matrix (NF4 / FP4 / INT8_ROW, core/quant.h): it is decoded
// to bf16 a panel of rows at a time into a small scratch buffer and multiplied from there, so the
// quantized weight is never held dequantized as a whole (the other operand is then rounded to bf16).
#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"

namespace lora {

struct QuantState;

struct MatView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
  int64_t stride = 0;  // elements between consecutive rows (>= cols)
  const QuantState* quant = nullptr;  // set for a quantized matrix (then stride == cols)

  float at(int64_t r, int64_t c) const;  // for tests and references
};

struct MutMatView {
  float* data = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t stride = 0;
};

// A 2-D tensor, or a tensor whose leading dimensions are flattened into rows.
MatView mat(const Tensor& t);
MutMatView mut_mat(Tensor& t);

// op(A) is trans_a ? Aᵀ : A; same for B. Shapes are checked (lora::Error on mismatch). Called inside an
// OpenMP parallel region, the product runs on the calling thread alone.
void matmul(const MatView& a, bool trans_a, const MatView& b, bool trans_b, const MutMatView& c,
            float alpha = 1.0f, float beta = 0.0f);

// Naive triple loop in double precision: the reference for tests only.
void matmul_reference(const MatView& a, bool trans_a, const MatView& b, bool trans_b, const MutMatView& c,
                      float alpha = 1.0f, float beta = 0.0f);

// y[M,out] = x[M,in] · Wᵀ (+ bias): a torch.nn.Linear with W [out,in] (f32, bf16 or quantized).
void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y);

// y[r, :] += v for every row r of y (f32; v has y's column count).
void add_to_rows(const Tensor& v, Tensor& y);

}  // namespace lora
