#include "formats/gguf_writer.h"

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/ggml_quant.h"
#include "formats/ggml_types.h"

namespace lora {

namespace {

using nlohmann::json;

template <typename T> void put(std::string& out, T v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void put_value(std::string& out, GGUFValueType type, GGUFValueType elem_type, const json& v, const std::string& key) {
  switch (type) {
    case GGUFValueType::UINT8: return put(out, v.get<uint8_t>());
    case GGUFValueType::INT8: return put(out, v.get<int8_t>());
    case GGUFValueType::UINT16: return put(out, v.get<uint16_t>());
    case GGUFValueType::INT16: return put(out, v.get<int16_t>());
    case GGUFValueType::UINT32: return put(out, v.get<uint32_t>());
    case GGUFValueType::INT32: return put(out, v.get<int32_t>());
    case GGUFValueType::FLOAT32: return put(out, v.get<float>());
    case GGUFValueType::BOOL: return put<uint8_t>(out, v.get<bool>() ? 1 : 0);
    case GGUFValueType::UINT64: return put(out, v.get<uint64_t>());
    case GGUFValueType::INT64: return put(out, v.get<int64_t>());
    case GGUFValueType::FLOAT64: return put(out, v.get<double>());
    case GGUFValueType::STRING: return put_string(out, v.get<std::string>());
    case GGUFValueType::ARRAY:
      if (elem_type == GGUFValueType::ARRAY) fail("GGUF metadata '{}': nested arrays are not written", key);
      put(out, uint32_t(elem_type));
      put<uint64_t>(out, v.size());
      for (const json& e : v) put_value(out, elem_type, elem_type, e, key);
      return;
  }
}

}  // namespace

void GGUFWriter::set(const std::string& key, GGUFValueType type, json value, GGUFValueType elem_type) {
  if (type == GGUFValueType::ARRAY ? !value.is_array() : value.is_array() || value.is_object() || value.is_null())
    fail("GGUF metadata '{}': value {} does not fit its type", key, value.dump());
  for (KV& kv : kvs_)
    if (kv.key == key) {
      kv = {key, type, elem_type, std::move(value)};
      return;
    }
  kvs_.push_back({key, type, elem_type, std::move(value)});
}

namespace {

GGMLType ggml_type_of(DType dtype, const std::string& name) {
  switch (dtype) {
    case DType::F32: return GGMLType::F32;
    case DType::F16: return GGMLType::F16;
    case DType::BF16: return GGMLType::BF16;
    default:
      if (is_ggml_quant(dtype)) return GGMLType(ggml_block(dtype).ggml_type);
      fail("GGUF tensor '{}': dtype {} has no ggml type here", name, dtype_name(dtype));
  }
}

}  // namespace

void GGUFWriter::add_tensor(const std::string& name, const Tensor& t) {
  add_entry({name, ggml_type_of(t.dtype(), name), {t.shape().rbegin(), t.shape().rend()}, 0, {}, [t] { return t; }});
}

void GGUFWriter::add_tensor_lazy(const std::string& name, DType dtype, std::vector<int64_t> shape,
                                 std::function<Tensor()> make) {
  add_entry({name, ggml_type_of(dtype, name), {shape.rbegin(), shape.rend()}, 0, {}, std::move(make)});
}

void GGUFWriter::add_tensor_raw(const std::string& name, GGMLType type, std::vector<int64_t> ne, std::string data) {
  add_entry({name, type, std::move(ne), 0, std::move(data), nullptr});
}

void GGUFWriter::add_entry(TensorEntry e) {
  const auto traits = ggml_type_traits(uint32_t(e.type));
  if (!traits || e.ne.empty() || e.ne[0] % traits->block_size != 0) fail("GGUF tensor '{}': bad type or dimensions", e.name);
  e.nbytes = uint64_t(e.ne[0] / traits->block_size) * traits->type_size;
  for (size_t i = 1; i < e.ne.size(); ++i) e.nbytes *= uint64_t(e.ne[i]);
  if (!e.make && e.nbytes != e.raw.size())
    fail("GGUF tensor '{}': {} bytes of data, its shape needs {}", e.name, e.raw.size(), e.nbytes);
  for (const TensorEntry& t : tensors_)
    if (t.name == e.name) fail("GGUF tensor '{}' added twice", e.name);
  tensors_.push_back(std::move(e));
}

uint64_t GGUFWriter::alignment() const {
  for (const KV& kv : kvs_)
    if (kv.key == "general.alignment") return kv.value.get<uint64_t>();
  return 32;
}

template <typename Sink> void GGUFWriter::emit(Sink&& sink) const {
  const uint64_t align = alignment();
  auto padded = [&](uint64_t n) { return (n + align - 1) / align * align; };
  std::string head = "GGUF";
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kvs_.size());
  for (const KV& kv : kvs_) {
    put_string(head, kv.key);
    put(head, uint32_t(kv.type));
    put_value(head, kv.type, kv.elem_type, kv.value, kv.key);
  }
  uint64_t offset = 0;
  for (const TensorEntry& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, uint32_t(t.ne.size()));
    for (int64_t d : t.ne) put<uint64_t>(head, uint64_t(d));
    put(head, uint32_t(t.type));
    put<uint64_t>(head, offset);
    offset = padded(offset + t.nbytes);
  }
  head.resize(padded(head.size()), '\0');
  sink(head.data(), head.size());
  const std::string zeros(align, '\0');
  for (const TensorEntry& t : tensors_) {
    if (t.make) {
      const Tensor data = t.make();
      if (uint64_t(data.nbytes()) != t.nbytes || ggml_type_of(data.dtype(), t.name) != t.type)
        fail("GGUF tensor '{}': made {} bytes of {}, its entry says {}", t.name, data.nbytes(), dtype_name(data.dtype()), t.nbytes);
      sink(data.data(), t.nbytes);
    } else {
      sink(t.raw.data(), t.raw.size());
    }
    sink(zeros.data(), padded(t.nbytes) - t.nbytes);
  }
}

std::string GGUFWriter::to_bytes() const {
  std::string out;
  emit([&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); });
  return out;
}

void GGUFWriter::write(const std::string& path) const {
  AtomicFile f(path);
  emit([&](const void* p, size_t n) { f.write(p, n); });
  f.commit();
}

}  // namespace lora
