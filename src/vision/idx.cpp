#include "vision/idx.h"

#include <zlib.h>

#include "core/error.h"

namespace lora::vision {
namespace {

// The whole file, inflated when gzipped (zlib reads a plain file through the same calls).
std::vector<uint8_t> read_all(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail_format(path, "cannot open");
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
  int err = 0;
  const char* msg = gzerror(f, &err);
  const std::string problem = n < 0 ? msg : "";
  gzclose(f);
  if (n < 0) fail_format(path, "cannot read: {}", problem);
  return out;
}

uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

}  // namespace

IdxArray read_idx(const std::string& path) {
  const std::vector<uint8_t> bytes = read_all(path);
  if (bytes.size() < 4) fail_format(path, "{} bytes: too short for an IDX header", bytes.size());
  if (bytes[0] != 0 || bytes[1] != 0)
    fail_format(path, "not an IDX file: magic {:02x}{:02x}{:02x}{:02x} does not start with 0000", bytes[0], bytes[1],
                bytes[2], bytes[3]);
  if (bytes[2] != 0x08) fail_format(path, "IDX element type 0x{:02x} is not 0x08 (unsigned byte)", bytes[2]);
  const int dims = bytes[3];
  if (dims < 1 || dims > 4) fail_format(path, "IDX with {} dimensions (1 to 4 expected)", dims);
  const size_t header = 4 + 4 * size_t(dims);
  if (bytes.size() < header) fail_format(path, "truncated IDX header");
  IdxArray a;
  uint64_t count = 1;
  for (int d = 0; d < dims; ++d) {
    a.shape.push_back(be32(&bytes[4 + 4 * size_t(d)]));
    count *= uint64_t(a.shape.back());
    if (count > (uint64_t(1) << 36)) fail_format(path, "IDX sizes are implausibly large");
  }
  if (bytes.size() - header != count)
    fail_format(path, "IDX header says {} bytes of data, the file has {}", count, bytes.size() - header);
  a.data.assign(bytes.begin() + long(header), bytes.end());
  return a;
}

}  // namespace lora::vision
