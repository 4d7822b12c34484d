#include "kernels/embedding.h"

#include "core/error.h"
#include "core/quant.h"

namespace lora {

void embedding_forward(const Tensor& table, const int32_t* ids, int64_t n, float* out) {
  const int64_t vocab = table.dim(0), dim = table.dim(1);
  const size_t row_bytes = size_t(dim) * dtype_size(table.dtype());
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) fail("token id {} is outside the vocabulary (size {})", ids[i], vocab);
    if (table.quantized()) {  // a quantized table (a GGUF's token_embd) decodes the rows it looks up
      dequantize_range(table, int64_t(ids[i]) * dim, int64_t(ids[i] + 1) * dim, out + i * dim);
      continue;
    }
    const char* row = static_cast<const char*>(table.data()) + size_t(ids[i]) * row_bytes;
    convert_to_f32(table.dtype(), row, out + i * dim, size_t(dim));
  }
}

}  // namespace lora

namespace lora {

void embedding_backward(const float* dout, const int32_t* ids, int64_t n, float* dtable, int64_t dim) {
  // Sequential over tokens: the same id may appear twice, and the scatter must not race.
  for (int64_t i = 0; i < n; ++i) {
    float* row = dtable + int64_t(ids[i]) * dim;
    const float* g = dout + i * dim;
    for (int64_t j = 0; j < dim; ++j) row[j] += g[j];
  }
}

}  // namespace lora
