#pragma once
// safetensors (SPEC 3.1): an 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}, then the data;
// data_offsets are relative to the end of the header.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace lora {

struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype_name;      // as written: "F32", "BF16", "F64", ...
  std::optional<DType> dtype;  // empty for dtypes the file may hold but Tensor cannot (F64, BOOL, F8_*)
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // data_offsets
};

class SafetensorsFile {
 public:
  // Maps the file and validates the header: length against the file size, every entry's dtype,
  // shape and data_offsets (inside the data section, matching shape x dtype size). Throws FormatError
  // naming the file (and the tensor) on any violation.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Sorted by name.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  const SafetensorsTensorInfo* find(const std::string& name) const;
  bool has(const std::string& name) const { return find(name) != nullptr; }
  // A view into the mapped file (a copy only when the data is not aligned for its dtype).
  Tensor load(const std::string& name) const;

 private:
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  uint64_t data_start_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsTensorInfo> tensors_;
};

// Writes `tensors` (in name order, back to back) with `metadata` as "__metadata__" (omitted when
// empty). The header is padded with spaces to a multiple of 8 bytes so the data is aligned. Atomic:
// the file appears complete or not at all. Throws lora::Error on failure.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The safetensors dtype string for a DType ("F32", "BF16", ...).
const char* safetensors_dtype_name(DType dtype);

}  // namespace lora
