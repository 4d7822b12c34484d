#pragma once
// GGUF v3 writer: typed metadata in insertion order, tensor infos, data aligned to general.alignment.
// Used for LoRA adapters for llama.cpp and for test fixtures.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tensor.h"
#include "formats/gguf.h"

namespace lora {

class GGUFWriter {
 public:
  // `value` must fit `type`: a number, bool or string, or for ARRAY a JSON array of `elem_type` values.
  void set(const std::string& key, GGUFValueType type, nlohmann::json value,
           GGUFValueType elem_type = GGUFValueType::UINT8);
  void set_string(const std::string& key, const std::string& v) { set(key, GGUFValueType::STRING, v); }
  void set_u32(const std::string& key, uint32_t v) { set(key, GGUFValueType::UINT32, v); }
  void set_i32(const std::string& key, int32_t v) { set(key, GGUFValueType::INT32, v); }
  void set_f32(const std::string& key, float v) { set(key, GGUFValueType::FLOAT32, double(v)); }
  void set_bool(const std::string& key, bool v) { set(key, GGUFValueType::BOOL, v); }
  void set_array(const std::string& key, GGUFValueType elem_type, nlohmann::json values) {
    set(key, GGUFValueType::ARRAY, std::move(values), elem_type);
  }

  // An F32, F16 or BF16 tensor, stored with ne = shape reversed.
  void add_tensor(const std::string& name, const Tensor& t);
  // Already-encoded data of any ggml type (e.g. Q8_0 blocks); `data` must hold exactly its size.
  void add_tensor_raw(const std::string& name, GGMLType type, std::vector<int64_t> ne, std::string data);

  // The whole file (for small files and tests).
  std::string to_bytes() const;
  // Written atomically. Throws lora::Error on failure.
  void write(const std::string& path) const;

 private:
  struct KV {
    std::string key;
    GGUFValueType type, elem_type;
    nlohmann::json value;
  };
  struct TensorEntry {
    std::string name;
    GGMLType type;
    std::vector<int64_t> ne;
    std::string data;
  };
  uint64_t alignment() const;
  template <typename Sink> void emit(Sink&& sink) const;

  std::vector<KV> kvs_;
  std::vector<TensorEntry> tensors_;
};

}  // namespace lora
