#pragma once
// A tensor is a typed, row-major, contiguous view over storage it may share with others (an mmapped
// file, an aligned heap buffer). Copying a Tensor copies the view, never the data.
//
// A quantized tensor (NF4, FP4, INT8_ROW) keeps its logical shape ([out, in] for a weight) over packed
// codes, and carries the immutable QuantState (core/quant.h) that decodes them; to() dequantizes.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace lora {

struct QuantState;

// Heap memory aligned for AVX-512 loads and oneDNN (64 bytes).
std::shared_ptr<void> aligned_alloc_shared(size_t bytes);

class Tensor {
 public:
  Tensor() = default;
  // Allocates zero-initialized aligned storage.
  Tensor(DType dtype, std::vector<int64_t> shape);
  // Views data owned by `owner` (which keeps it alive).
  Tensor(DType dtype, std::vector<int64_t> shape, void* data, std::shared_ptr<void> owner);
  // A quantized tensor: packed codes viewed like the above, decoded by `quant`.
  Tensor(DType dtype, std::vector<int64_t> shape, void* data, std::shared_ptr<void> owner,
         std::shared_ptr<const QuantState> quant);

  static Tensor zeros(DType dtype, std::vector<int64_t> shape) { return Tensor(dtype, std::move(shape)); }

  bool empty() const { return data_ == nullptr; }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int64_t numel() const;
  size_t nbytes() const { return dtype_nbytes(dtype_, numel()); }  // of the data (packed codes if quantized)
  const std::shared_ptr<void>& owner() const { return owner_; }  // what keeps the data alive
  bool quantized() const { return quant_ != nullptr; }
  const QuantState* quant() const { return quant_.get(); }
  const std::shared_ptr<const QuantState>& quant_ptr() const { return quant_; }

  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T> T* data_as() { return static_cast<T*>(data_); }
  template <typename T> const T* data_as() const { return static_cast<const T*>(data_); }
  float* f32();              // throws unless dtype is F32
  const float* f32() const;

  // Rows [begin, end) of the first dimension, sharing storage (not of quantized tensors).
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // The rows of each part one after another (equal dtype and trailing dims; ggml block types too, whose rows are
  // whole blocks; not the bitsandbytes formats).
  static Tensor concat_rows(const std::vector<Tensor>& parts);
  // The same data with another shape of equal element count.
  Tensor reshape(std::vector<int64_t> shape) const;
  // A deep copy (a quantized copy shares the immutable QuantState), optionally converted to another
  // floating dtype; a quantized tensor converts by dequantizing.
  Tensor clone() const;
  Tensor to(DType dtype) const;

  std::string shape_str() const;  // "[64, 512]"

 private:
  DType dtype_ = DType::F32;
  std::vector<int64_t> shape_;
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
  std::shared_ptr<const QuantState> quant_;
};

}  // namespace lora
