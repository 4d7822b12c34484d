#include "formats/gguf.h"

#include <cstring>
#include <set>

#include "core/error.h"
#include "core/ggml_quant.h"
#include "formats/ggml_types.h"

namespace lora {

namespace {

constexpr uint32_t kMaxDims = 4;        // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 4;       // arrays of arrays are legal; unbounded nesting is not
constexpr uint64_t kMaxAlignment = uint64_t(1) << 30;

const char* value_type_name(GGUFValueType t) {
  switch (t) {
    case GGUFValueType::UINT8: return "uint8";
    case GGUFValueType::INT8: return "int8";
    case GGUFValueType::UINT16: return "uint16";
    case GGUFValueType::INT16: return "int16";
    case GGUFValueType::UINT32: return "uint32";
    case GGUFValueType::INT32: return "int32";
    case GGUFValueType::FLOAT32: return "float32";
    case GGUFValueType::BOOL: return "bool";
    case GGUFValueType::STRING: return "string";
    case GGUFValueType::ARRAY: return "array";
    case GGUFValueType::UINT64: return "uint64";
    case GGUFValueType::INT64: return "int64";
    case GGUFValueType::FLOAT64: return "float64";
  }
  return "?";
}

// The smallest number of bytes one value of type `t` occupies, so a count can be checked against
// the bytes left before anything is allocated for it.
uint64_t min_value_size(GGUFValueType t) {
  switch (t) {
    case GGUFValueType::UINT8: case GGUFValueType::INT8: case GGUFValueType::BOOL: return 1;
    case GGUFValueType::UINT16: case GGUFValueType::INT16: return 2;
    case GGUFValueType::UINT32: case GGUFValueType::INT32: case GGUFValueType::FLOAT32: return 4;
    case GGUFValueType::UINT64: case GGUFValueType::INT64: case GGUFValueType::FLOAT64: return 8;
    case GGUFValueType::STRING: return 8;   // u64 length
    case GGUFValueType::ARRAY: return 12;   // u32 type + u64 count
  }
  return 1;
}

class HeaderParser {
 public:
  explicit HeaderParser(ByteReader& r) : r_(r) {}

  std::string read_string(const std::string& what) {
    const size_t at = r_.pos();
    const uint64_t n = r_.read<uint64_t>();
    if (n > r_.remaining())
      fail_format(r_.path(), "truncated or corrupt: {} at offset {} claims {} bytes, only {} left", what, at, n,
                  r_.remaining());
    return r_.read_string(size_t(n));
  }

  GGUFValueType read_type(const std::string& key) {
    const uint32_t t = r_.read<uint32_t>();
    if (t > uint32_t(GGUFValueType::FLOAT64)) fail_format(r_.path(), "metadata '{}': unknown value type {}", key, t);
    return GGUFValueType(t);
  }

  // Reads one value of type `t`; for arrays stores the element type in *elem_type.
  nlohmann::json read_value(GGUFValueType t, const std::string& key, int depth, GGUFValueType* elem_type) {
    switch (t) {
      case GGUFValueType::UINT8: return r_.read<uint8_t>();
      case GGUFValueType::INT8: return r_.read<int8_t>();
      case GGUFValueType::UINT16: return r_.read<uint16_t>();
      case GGUFValueType::INT16: return r_.read<int16_t>();
      case GGUFValueType::UINT32: return r_.read<uint32_t>();
      case GGUFValueType::INT32: return r_.read<int32_t>();
      case GGUFValueType::FLOAT32: return double(r_.read<float>());
      case GGUFValueType::BOOL: return r_.read<uint8_t>() != 0;
      case GGUFValueType::UINT64: return r_.read<uint64_t>();
      case GGUFValueType::INT64: return r_.read<int64_t>();
      case GGUFValueType::FLOAT64: return r_.read<double>();
      case GGUFValueType::STRING: return read_string(fmt::format("metadata '{}' string", key));
      case GGUFValueType::ARRAY: return read_array(key, depth, elem_type);
    }
    fail_format(r_.path(), "metadata '{}': unknown value type {}", key, uint32_t(t));
  }

 private:
  nlohmann::json read_array(const std::string& key, int depth, GGUFValueType* elem_type) {
    if (depth >= kMaxArrayDepth) fail_format(r_.path(), "metadata '{}': arrays nested deeper than {}", key, kMaxArrayDepth);
    const GGUFValueType et = read_type(key);
    if (elem_type) *elem_type = et;
    const size_t at = r_.pos();
    const uint64_t count = r_.read<uint64_t>();
    if (count > r_.remaining() / min_value_size(et))
      fail_format(r_.path(), "truncated or corrupt: metadata '{}' at offset {} claims an array of {} {} values, only {} bytes left",
                  key, at, count, value_type_name(et), r_.remaining());
    nlohmann::json a = nlohmann::json::array();
    a.get_ref<nlohmann::json::array_t&>().reserve(size_t(count));
    for (uint64_t i = 0; i < count; ++i) a.push_back(read_value(et, key, depth + 1, nullptr));
    return a;
  }

  ByteReader& r_;
};

// Bytes of a tensor with these dimensions, or a FormatError naming the tensor.
uint64_t tensor_nbytes(const std::string& path, const GGUFTensorInfo& t) {
  const auto traits = ggml_type_traits(t.type);
  if (!traits) fail_format(path, "tensor '{}' has unknown ggml type {}", t.name, t.type);
  if (t.ne[0] % traits->block_size != 0)
    fail_format(path, "tensor '{}': ne[0] = {} is not a multiple of the {} block size {}", t.name, t.ne[0],
                traits->name, traits->block_size);
  uint64_t bytes = 0;
  bool overflow = __builtin_mul_overflow(uint64_t(t.ne[0] / traits->block_size), uint64_t(traits->type_size), &bytes);
  for (size_t i = 1; i < t.ne.size(); ++i) overflow |= __builtin_mul_overflow(bytes, uint64_t(t.ne[i]), &bytes);
  if (overflow) fail_format(path, "tensor '{}': dimensions overflow", t.name);
  return bytes;
}

}  // namespace

GGUFFile GGUFFile::open(const std::string& path) {
  GGUFFile g;
  g.path_ = path;
  g.file_ = MappedFile::open(path);
  ByteReader r(g.file_->data(), g.file_->size(), path);

  if (r.size() < 4 || std::memcmp(r.ptr(), "GGUF", 4) != 0) fail_format(path, "not a GGUF file (bad magic)");
  r.skip(4);
  g.version_ = r.read<uint32_t>();
  if (g.version_ == 1) fail_format(path, "GGUF version 1 is not supported (only 2 and 3)");
  if (g.version_ != 2 && g.version_ != 3)
    fail_format(path, "unsupported GGUF version {} (expected 2 or 3; a big-endian file?)", g.version_);

  const uint64_t n_tensors = r.read<uint64_t>();
  const uint64_t n_kv = r.read<uint64_t>();
  // Every kv pair takes at least 13 bytes (key length, type, one-byte value), every tensor info 24.
  if (n_kv > r.remaining() / 13)
    fail_format(path, "truncated or corrupt: header claims {} metadata entries, only {} bytes left", n_kv, r.remaining());
  if (n_tensors > r.remaining() / 24)
    fail_format(path, "truncated or corrupt: header claims {} tensors, only {} bytes left", n_tensors, r.remaining());

  HeaderParser p(r);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = p.read_string(fmt::format("metadata key #{}", i));
    const GGUFValueType type = p.read_type(key);
    GGUFValueType elem_type = type;
    nlohmann::json value = p.read_value(type, key, 0, &elem_type);
    if (g.value_types_.count(key)) fail_format(path, "duplicate metadata key '{}'", key);
    g.value_types_[key] = {type, elem_type};
    g.metadata_[key] = std::move(value);
  }

  if (g.has("general.alignment")) {
    const nlohmann::json& a = g.metadata_["general.alignment"];
    const uint64_t align = a.is_number_unsigned() ? a.get<uint64_t>() : 0;
    if (align == 0 || (align & (align - 1)) != 0 || align > kMaxAlignment)
      fail_format(path, "general.alignment must be a power of two, found {}", a.dump());
    g.alignment_ = align;
  }

  std::set<std::string> names;
  g.tensors_.reserve(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GGUFTensorInfo t;
    t.name = p.read_string(fmt::format("tensor name #{}", i));
    const uint32_t n_dims = r.read<uint32_t>();
    if (n_dims == 0 || n_dims > kMaxDims) fail_format(path, "tensor '{}': n_dims {} not in 1..{}", t.name, n_dims, kMaxDims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = r.read<uint64_t>();
      if (ne > uint64_t(INT64_MAX)) fail_format(path, "tensor '{}': ne[{}] = {} is out of range", t.name, d, ne);
      t.ne.push_back(int64_t(ne));
    }
    t.type = r.read<uint32_t>();
    t.offset = r.read<uint64_t>();
    if (!names.insert(t.name).second) fail_format(path, "duplicate tensor name '{}'", t.name);
    t.nbytes = tensor_nbytes(path, t);
    if (t.offset % g.alignment_ != 0)
      fail_format(path, "tensor '{}': data offset {} is not a multiple of the alignment {}", t.name, t.offset, g.alignment_);
    g.tensors_.push_back(std::move(t));
  }

  // A vocabulary-only file may end right after the tensor infos, without the padding.
  g.data_offset_ = (r.pos() + g.alignment_ - 1) / g.alignment_ * g.alignment_;
  const uint64_t file_size = r.size();
  for (const GGUFTensorInfo& t : g.tensors_) {
    const uint64_t avail = g.data_offset_ <= file_size ? file_size - g.data_offset_ : 0;
    if (t.offset > avail || t.nbytes > avail - t.offset)
      fail_format(path, "truncated: tensor '{}' data [{}, {}) runs past the end of the data section ({} bytes)", t.name,
                  t.offset, t.offset + t.nbytes, avail);
  }
  return g;
}

GGUFValueType GGUFFile::value_type(const std::string& key) const {
  auto it = value_types_.find(key);
  if (it == value_types_.end()) fail_format(path_, "missing metadata key '{}'", key);
  return it->second.first;
}

GGUFValueType GGUFFile::array_type(const std::string& key) const {
  auto it = value_types_.find(key);
  if (it == value_types_.end()) fail_format(path_, "missing metadata key '{}'", key);
  if (it->second.first != GGUFValueType::ARRAY) fail_format(path_, "metadata '{}' is not an array", key);
  return it->second.second;
}

std::string GGUFFile::get_string(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) fail_format(path_, "missing metadata key '{}'", key);
  if (!it->is_string()) fail_format(path_, "metadata '{}' is {}, expected a string", key, it->type_name());
  return it->get<std::string>();
}

std::string GGUFFile::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

int64_t GGUFFile::get_int(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) fail_format(path_, "missing metadata key '{}'", key);
  if (it->is_number_unsigned()) {
    const uint64_t v = it->get<uint64_t>();
    if (v > uint64_t(INT64_MAX)) fail_format(path_, "metadata '{}' = {} is out of range", key, v);
    return int64_t(v);
  }
  if (!it->is_number_integer()) fail_format(path_, "metadata '{}' is {}, expected an integer", key, it->type_name());
  return it->get<int64_t>();
}

int64_t GGUFFile::get_int(const std::string& key, int64_t fallback) const { return has(key) ? get_int(key) : fallback; }

double GGUFFile::get_float(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) fail_format(path_, "missing metadata key '{}'", key);
  if (!it->is_number()) fail_format(path_, "metadata '{}' is {}, expected a number", key, it->type_name());
  return it->get<double>();
}

double GGUFFile::get_float(const std::string& key, double fallback) const { return has(key) ? get_float(key) : fallback; }

const nlohmann::json& GGUFFile::get_array(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) fail_format(path_, "missing metadata key '{}'", key);
  if (!it->is_array()) fail_format(path_, "metadata '{}' is {}, expected an array", key, it->type_name());
  return *it;
}

const GGUFTensorInfo* GGUFFile::find_tensor(const std::string& name) const {
  for (const GGUFTensorInfo& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const uint8_t* GGUFFile::tensor_data(const GGUFTensorInfo& info) const {
  return file_->data() + data_offset_ + info.offset;
}

Tensor GGUFFile::load_tensor(const std::string& name) const {
  const GGUFTensorInfo* info = find_tensor(name);
  if (!info) fail_format(path_, "no tensor named '{}'", name);
  const std::vector<int64_t> shape = info->shape();
  const uint8_t* src = tensor_data(*info);
  const GGMLTypeTraits traits = *ggml_type_traits(info->type);  // open() rejected unknown types
  const int64_t n = int64_t(info->nbytes / traits.type_size) * traits.block_size;
  auto aligned = [&](size_t a) { return reinterpret_cast<uintptr_t>(src) % a == 0; };

  switch (GGMLType(info->type)) {
    case GGMLType::F32:
      if (aligned(4)) return Tensor(DType::F32, shape, const_cast<uint8_t*>(src), file_);
      break;
    case GGMLType::BF16:
      if (aligned(2)) return Tensor(DType::BF16, shape, const_cast<uint8_t*>(src), file_);
      break;
    case GGMLType::F16: {
      Tensor t(DType::F32, shape);
      float* dst = t.f32();
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      return t;
    }
    default: {
      const std::optional<DType> block_type = ggml_block_dtype(info->type);
      if (!block_type)
        fail_format(path_, "tensor '{}' has type {}, which cannot be loaded (supported: F32, F16, BF16, Q4_0, Q4_1, "
                           "Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)", name, traits.name);
      const int64_t n_blocks = int64_t(info->nbytes / traits.type_size);
      if (const auto bad = ggml_first_nonfinite_block(*block_type, src, n_blocks))
        fail_format(path_, "tensor '{}' ({}): block {} of {} has a NaN or infinite scale", name, traits.name, *bad, n_blocks);
      return ggml_tensor_view(*block_type, shape, src, file_);
    }
  }
  // A file with an alignment smaller than the element size: copy instead of viewing.
  Tensor t(info->type == uint32_t(GGMLType::F32) ? DType::F32 : DType::BF16, shape);
  std::memcpy(t.data(), src, info->nbytes);
  return t;
}

}  // namespace lora
