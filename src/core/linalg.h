#pragma once
// Dense linear algebra beyond GEMM, through LAPACK (Debian's liblapacke).
#include "core/tensor.h"

namespace lora {

struct Svd {
  Tensor u;   // [m, k]  left singular vectors (columns), k = min(m, n)
  Tensor s;   // [k]     singular values, descending
  Tensor vt;  // [k, n]  right singular vectors (rows)
};

// Thin SVD of an [m, n] matrix (any float dtype; computed in double, returned as f32).
Svd svd(const Tensor& a);

}  // namespace lora
