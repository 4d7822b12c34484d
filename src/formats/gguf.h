#pragma once
// GGUF reader (v2/v3): header, typed metadata, tensor infos; tensor data stays memory-mapped.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace lora {

enum class GGUFValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// ggml tensor types this project reads (numbering from ggml.h).
enum class GGMLType : uint32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 8, BF16 = 30 };

struct GGUFTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // innermost dimension first, as ggml writes it
  uint32_t type = 0;        // GGMLType value
  uint64_t offset = 0;      // relative to the start of the data section
  uint64_t nbytes = 0;      // size of the data, from ne and the type's block layout
  // Row-major shape (ne reversed), the order Tensor uses.
  std::vector<int64_t> shape() const { return {ne.rbegin(), ne.rend()}; }
};

class GGUFFile {
 public:
  // Parses and validates the whole header (every offset and size checked against the file size);
  // throws FormatError naming the file on anything malformed or truncated.
  static GGUFFile open(const std::string& path);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }

  // Metadata values as JSON: numbers, bools, strings, arrays of them.
  const nlohmann::json& metadata() const { return metadata_; }
  bool has(const std::string& key) const { return metadata_.contains(key); }
  GGUFValueType value_type(const std::string& key) const;  // for arrays: ARRAY
  GGUFValueType array_type(const std::string& key) const;  // element type of an ARRAY value
  std::string get_string(const std::string& key) const;     // throws FormatError if missing
  std::string get_string(const std::string& key, const std::string& fallback) const;
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double fallback) const;
  const nlohmann::json& get_array(const std::string& key) const;

  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
  const GGUFTensorInfo* find_tensor(const std::string& name) const;
  // F32/BF16: a view into the mapped file; F16 is converted to f32; ggml's block types (Q4_0 ... IQ4_XS,
  // core/ggml_quant.h) stay quantized views of the file (a NaN or infinite block scale is a FormatError).
  Tensor load_tensor(const std::string& name) const;
  // The stored bytes of a tensor (info.nbytes of them), whatever its type.
  const uint8_t* tensor_data(const GGUFTensorInfo& info) const;
  uint64_t data_offset() const { return data_offset_; }
  uint64_t alignment() const { return alignment_; }

 private:
  std::string path_;
  uint32_t version_ = 0;
  nlohmann::json metadata_ = nlohmann::json::object();
  // key -> (value type, element type for arrays)
  std::map<std::string, std::pair<GGUFValueType, GGUFValueType>> value_types_;
  std::vector<GGUFTensorInfo> tensors_;
  std::shared_ptr<MappedFile> file_;
  uint64_t data_offset_ = 0;
  uint64_t alignment_ = 32;
};

}  // namespace lora
