#pragma once
// The IDX files of (Fashion-)MNIST, plain or gzipped (.gz, as Debian's dataset-fashion-mnist ships them):
//   u32 big-endian magic 0x0000 TT DD (TT = 0x08: unsigned bytes; DD = number of dimensions),
//   DD x u32 big-endian sizes, then the bytes, row-major.
#include <cstdint>
#include <string>
#include <vector>

namespace lora::vision {

struct IdxArray {
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

// FormatError naming the file for a wrong magic, an unsupported element type, or a size that does not
// match the header (truncated or trailing data).
IdxArray read_idx(const std::string& path);

}  // namespace lora::vision
