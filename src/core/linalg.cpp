#include "core/linalg.h"

#include <lapacke.h>

#include <vector>

#include "core/error.h"

namespace lora {

Svd svd(const Tensor& a) {
  if (a.ndim() != 2) fail("svd: expected a matrix, got shape {}", a.shape_str());
  const int64_t m = a.dim(0), n = a.dim(1), k = std::min(m, n);
  const Tensor a32 = a.dtype() == DType::F32 ? a : a.to(DType::F32);
  std::vector<double> work(static_cast<size_t>(m * n)), u(static_cast<size_t>(m * k)), s(static_cast<size_t>(k)),
      vt(static_cast<size_t>(k * n));
  for (int64_t i = 0; i < m * n; ++i) work[size_t(i)] = a32.f32()[i];
  const lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', lapack_int(m), lapack_int(n), work.data(),
                                         lapack_int(n), s.data(), u.data(), lapack_int(k), vt.data(), lapack_int(n));
  if (info != 0) fail("svd: LAPACK dgesdd failed (info {}) on a {}x{} matrix", info, m, n);
  Svd r{Tensor(DType::F32, {m, k}), Tensor(DType::F32, {k}), Tensor(DType::F32, {k, n})};
  for (size_t i = 0; i < u.size(); ++i) r.u.f32()[i] = float(u[i]);
  for (size_t i = 0; i < s.size(); ++i) r.s.f32()[i] = float(s[i]);
  for (size_t i = 0; i < vt.size(); ++i) r.vt.f32()[i] = float(vt[i]);
  return r;
}

}  // namespace lora
