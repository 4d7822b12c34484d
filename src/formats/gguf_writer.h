#pragma once
// GGUF v3 writer: typed metadata in insertion order, tensor infos, data aligned to general.alignment.
// Used for models, LoRA adapters for llama.cpp and test fixtures. Tensors are held, not copied, and a lazy
// tensor is made only when its bytes are written, so writing a model needs no second copy of it.
#include <cstdint>
#include <functional>
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

  // An F32, F16, BF16 or ggml block-type tensor, stored with ne = shape reversed. The writer keeps a
  // reference to `t` (its storage, not a copy) until the file is written.
  void add_tensor(const std::string& name, const Tensor& t);
  // A tensor of `dtype` and `shape` that `make` produces when the file is written (and that is released
  // right after): a transformed copy of a weight costs its memory one tensor at a time.
  void add_tensor_lazy(const std::string& name, DType dtype, std::vector<int64_t> shape, std::function<Tensor()> make);
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
    uint64_t nbytes = 0;
    std::string raw;                // add_tensor_raw's bytes
    std::function<Tensor()> make;   // add_tensor / add_tensor_lazy: the tensor whose bytes are written
  };
  void add_entry(TensorEntry e);
  uint64_t alignment() const;
  template <typename Sink> void emit(Sink&& sink) const;

  std::vector<KV> kvs_;
  std::vector<TensorEntry> tensors_;
};

}  // namespace lora
