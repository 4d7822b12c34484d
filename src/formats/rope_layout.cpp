#include "formats/rope_layout.h"

#include <cstring>

#include "core/error.h"

namespace lora {

namespace {

enum class Direction { ToHalf, ToInterleaved };

Tensor permute_rows(const Tensor& w, int64_t n_heads, Direction dir) {
  if (w.ndim() < 1 || n_heads <= 0 || w.dim(0) % n_heads != 0 || (w.dim(0) / n_heads) % 2 != 0)
    fail("RoPE row permutation: {} rows do not split into {} heads of even size", w.ndim() < 1 ? 0 : w.dim(0), n_heads);
  const int64_t d = w.dim(0) / n_heads, half = d / 2;
  const size_t row_bytes = w.dim(0) == 0 ? 0 : w.nbytes() / size_t(w.dim(0));
  if (w.quantized() && !is_ggml_quant(w.dtype()))
    fail("RoPE row permutation of a {} tensor (its blocks run across rows)", dtype_name(w.dtype()));
  // A ggml-quantized weight's rows are whole blocks: moving rows moves bytes.
  auto storage = aligned_alloc_shared(w.nbytes());
  Tensor out(w.dtype(), w.shape(), storage.get(), storage, w.quant_ptr());
  const auto* src = static_cast<const uint8_t*>(w.data());
  auto* dst = static_cast<uint8_t*>(out.data());
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < half; ++i) {
        const int64_t half_row = h * d + j * half + i, interleaved_row = h * d + 2 * i + j;
        const int64_t to = dir == Direction::ToHalf ? half_row : interleaved_row;
        const int64_t from = dir == Direction::ToHalf ? interleaved_row : half_row;
        std::memcpy(dst + to * row_bytes, src + from * row_bytes, row_bytes);
      }
  return out;
}

}  // namespace

Tensor rope_interleaved_to_half(const Tensor& w, int64_t n_heads) { return permute_rows(w, n_heads, Direction::ToHalf); }
Tensor rope_half_to_interleaved(const Tensor& w, int64_t n_heads) { return permute_rows(w, n_heads, Direction::ToInterleaved); }

}  // namespace lora
