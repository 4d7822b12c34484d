#include "core/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/quant.h"

namespace lora {

std::shared_ptr<void> aligned_alloc_shared(size_t bytes) {
  constexpr size_t kAlign = 64;
  const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, rounded == 0 ? kAlign : rounded);
  if (!p) fail("out of memory allocating {} bytes", bytes);
  std::memset(p, 0, rounded == 0 ? kAlign : rounded);
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

static int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail("negative dimension in shape");
    n *= d;
  }
  return n;
}

Tensor::Tensor(DType dtype, std::vector<int64_t> shape) : dtype_(dtype), shape_(std::move(shape)) {
  owner_ = aligned_alloc_shared(dtype_nbytes(dtype_, product(shape_)));
  data_ = owner_.get();
}

Tensor::Tensor(DType dtype, std::vector<int64_t> shape, void* data, std::shared_ptr<void> owner)
    : dtype_(dtype), shape_(std::move(shape)), data_(data), owner_(std::move(owner)) {}

Tensor::Tensor(DType dtype, std::vector<int64_t> shape, void* data, std::shared_ptr<void> owner,
               std::shared_ptr<const QuantState> quant)
    : dtype_(dtype), shape_(std::move(shape)), data_(data), owner_(std::move(owner)), quant_(std::move(quant)) {
  if (is_quantized(dtype_) != (quant_ != nullptr))
    fail("a {} tensor {} a quantization state", dtype_name(dtype_), quant_ ? "cannot have" : "needs");
}

int64_t Tensor::numel() const { return product(shape_); }

float* Tensor::f32() {
  if (dtype_ != DType::F32) fail("expected an f32 tensor, found {}", dtype_name(dtype_));
  return static_cast<float*>(data_);
}
const float* Tensor::f32() const {
  if (dtype_ != DType::F32) fail("expected an f32 tensor, found {}", dtype_name(dtype_));
  return static_cast<const float*>(data_);
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  if (shape_.empty() || begin < 0 || end > shape_[0] || begin > end)
    fail("slice_rows({}, {}) out of range for shape {}", begin, end, shape_str());
  // ggml's block types store each row as whole blocks, so a run of rows is a run of bytes; the
  // bitsandbytes formats' blocks and absmax run across rows.
  if (quant_ && !is_ggml_quant(dtype_)) fail("slice_rows of a quantized ({}) tensor", dtype_name(dtype_));
  std::vector<int64_t> s = shape_;
  s[0] = end - begin;
  const size_t row_bytes = dtype_nbytes(dtype_, numel() / std::max<int64_t>(shape_[0], 1));
  return Tensor(dtype_, s, static_cast<char*>(data_) + begin * row_bytes, owner_, quant_);
}

Tensor Tensor::concat_rows(const std::vector<Tensor>& parts) {
  if (parts.empty()) fail("concat_rows of no tensors");
  std::vector<int64_t> shape = parts[0].shape();
  if (shape.empty()) fail("concat_rows of a scalar");
  shape[0] = 0;
  for (const Tensor& p : parts) {
    if (p.dtype() != parts[0].dtype() || p.ndim() != parts[0].ndim() ||
        !std::equal(p.shape().begin() + 1, p.shape().end(), parts[0].shape().begin() + 1))
      fail("concat_rows: {} {} does not continue {} {}", dtype_name(p.dtype()), p.shape_str(),
           dtype_name(parts[0].dtype()), parts[0].shape_str());
    if (p.quantized() && !is_ggml_quant(p.dtype())) fail("concat_rows of a quantized ({}) tensor", dtype_name(p.dtype()));
    shape[0] += p.dim(0);
  }
  Tensor out(parts[0].dtype(), shape);
  char* dst = static_cast<char*>(out.data());
  for (const Tensor& p : parts) {
    std::memcpy(dst, p.data(), p.nbytes());
    dst += p.nbytes();
  }
  return out;
}

Tensor Tensor::reshape(std::vector<int64_t> shape) const {
  if (product(shape) != numel()) fail("cannot reshape {} to {} elements", shape_str(), product(shape));
  return Tensor(dtype_, std::move(shape), data_, owner_, quant_);
}

Tensor Tensor::clone() const {
  auto storage = aligned_alloc_shared(nbytes());
  std::memcpy(storage.get(), data_, nbytes());
  return Tensor(dtype_, shape_, storage.get(), storage, quant_);
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return clone();
  if (quant_) {
    if (is_quantized(dtype)) fail("cannot convert {} to {} (dequantize first)", dtype_name(dtype_), dtype_name(dtype));
    Tensor f = dequantize(*this);
    return dtype == DType::F32 ? f : f.to(dtype);
  }
  if (is_quantized(dtype)) fail("converting to {} needs quantize() (core/quant.h)", dtype_name(dtype));
  Tensor t(dtype, shape_);
  const size_t n = size_t(numel());
  if (dtype_ == DType::F32) {
    convert_from_f32(static_cast<const float*>(data_), dtype, t.data(), n);
  } else if (dtype == DType::F32) {
    convert_to_f32(dtype_, data_, t.f32(), n);
  } else {
    Tensor tmp = to(DType::F32);
    convert_from_f32(tmp.f32(), dtype, t.data(), n);
  }
  return t;
}

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape_.size(); ++i) s += (i ? ", " : "") + std::to_string(shape_[i]);
  return s + "]";
}

}  // namespace lora
