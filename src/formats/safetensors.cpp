#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"

namespace lora {

namespace {

using nlohmann::json;

// The safetensors crate refuses headers above 100 MB; so do we, before parsing anything.
constexpr uint64_t kMaxHeaderSize = 100'000'000;

struct DTypeEntry {
  const char* name;
  size_t size;
  std::optional<DType> dtype;
};

// Every dtype the format defines, so that a file holding ones Tensor lacks still validates.
constexpr DTypeEntry kDTypes[] = {
    {"F32", 4, DType::F32},   {"F16", 2, DType::F16},   {"BF16", 2, DType::BF16},  {"I32", 4, DType::I32},
    {"I64", 8, DType::I64},   {"U8", 1, DType::U8},     {"I8", 1, DType::I8},      {"F64", 8, std::nullopt},
    {"I16", 2, std::nullopt}, {"U16", 2, std::nullopt}, {"U32", 4, std::nullopt},  {"U64", 8, std::nullopt},
    {"BOOL", 1, std::nullopt}, {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
};

const DTypeEntry* find_dtype(const std::string& name) {
  for (const DTypeEntry& e : kDTypes)
    if (name == e.name) return &e;
  return nullptr;
}

SafetensorsTensorInfo parse_entry(const std::string& path, const std::string& name, const json& e, uint64_t data_size) {
  if (!e.is_object()) fail_format(path, "tensor '{}': header entry is not an object", name);
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!e.contains(key)) fail_format(path, "tensor '{}': header entry has no '{}'", name, key);
  SafetensorsTensorInfo t;
  t.name = name;
  if (!e["dtype"].is_string()) fail_format(path, "tensor '{}': dtype is not a string", name);
  t.dtype_name = e["dtype"].get<std::string>();
  const DTypeEntry* dt = find_dtype(t.dtype_name);
  if (!dt) fail_format(path, "tensor '{}': unknown dtype '{}'", name, t.dtype_name);
  t.dtype = dt->dtype;

  const json& shape = e["shape"];
  if (!shape.is_array()) fail_format(path, "tensor '{}': shape is not a list", name);
  uint64_t numel = 1;
  for (const json& d : shape) {
    if (!d.is_number_unsigned()) fail_format(path, "tensor '{}': shape {} has a non-integer or negative dimension", name, shape.dump());
    const uint64_t v = d.get<uint64_t>();
    if (v > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, v, &numel))
      fail_format(path, "tensor '{}': shape {} is too large", name, shape.dump());
    t.shape.push_back(int64_t(v));
  }

  const json& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    fail_format(path, "tensor '{}': data_offsets must be two non-negative integers, found {}", name, off.dump());
  t.begin = off[0].get<uint64_t>();
  t.end = off[1].get<uint64_t>();
  if (t.begin > t.end) fail_format(path, "tensor '{}': data_offsets [{}, {}] end before they begin", name, t.begin, t.end);
  if (t.end > data_size)
    fail_format(path, "tensor '{}': data_offsets [{}, {}] run past the end of the data section ({} bytes; truncated?)",
                name, t.begin, t.end, data_size);
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, uint64_t(dt->size), &nbytes) || nbytes != t.end - t.begin)
    fail_format(path, "tensor '{}': data_offsets [{}, {}] hold {} bytes, but shape {} of {} needs {}", name, t.begin,
                t.end, t.end - t.begin, shape.dump(), t.dtype_name, nbytes);
  return t;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.file_ = MappedFile::open(path);
  const uint64_t size = f.file_->size();
  if (size < 8) fail_format(path, "truncated: {} bytes, a safetensors file starts with an 8-byte header length", size);
  uint64_t n = 0;
  std::memcpy(&n, f.file_->data(), 8);
  if (n > size - 8)
    fail_format(path, "header length {} is larger than the file ({} bytes; truncated or not safetensors)", n, size);
  if (n > kMaxHeaderSize) fail_format(path, "header length {} exceeds the {}-byte limit", n, kMaxHeaderSize);
  f.data_start_ = 8 + n;
  const uint64_t data_size = size - f.data_start_;

  const auto* text = reinterpret_cast<const char*>(f.file_->data() + 8);
  json header = json::parse(text, text + n, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) fail_format(path, "header is not valid JSON (truncated or not safetensors)");
  if (!header.is_object()) fail_format(path, "header is not a JSON object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail_format(path, "__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail_format(path, "__metadata__ value '{}' is not a string", m.key());
        f.metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    f.tensors_.push_back(parse_entry(path, it.key(), *it, data_size));
  }
  // nlohmann's object keeps keys sorted, so tensors_ is sorted by name for find().
  return f;
}

const SafetensorsTensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const SafetensorsTensorInfo& t, const std::string& n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

Tensor SafetensorsFile::load(const std::string& name) const {
  const SafetensorsTensorInfo* t = find(name);
  if (!t) fail_format(path_, "no tensor named '{}'", name);
  if (!t->dtype) fail_format(path_, "tensor '{}' has dtype {}, which cannot be loaded", name, t->dtype_name);
  auto* data = const_cast<uint8_t*>(file_->data() + data_start_ + t->begin);
  if (reinterpret_cast<uintptr_t>(data) % dtype_size(*t->dtype) == 0) return Tensor(*t->dtype, t->shape, data, file_);
  Tensor copy(*t->dtype, t->shape);
  std::memcpy(copy.data(), data, t->end - t->begin);
  return copy;
}

const char* safetensors_dtype_name(DType dtype) {
  for (const DTypeEntry& e : kDTypes)
    if (e.dtype == dtype) return e.name;
  fail("dtype {} has no safetensors name", dtype_name(dtype));
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") fail("{}: '__metadata__' cannot be a tensor name", path);
    if (t.empty() && t.numel() != 0) fail("{}: tensor '{}' has no data", path, name);
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump(-1, ' ', false, json::error_handler_t::replace);
  text.append((8 - text.size() % 8) % 8, ' ');

  AtomicFile out(path);
  const uint64_t n = text.size();
  out.write(&n, 8);
  out.write(text);
  for (const auto& [name, t] : tensors)
    if (t.nbytes() > 0) out.write(t.data(), t.nbytes());
  out.commit();
}

}  // namespace lora
