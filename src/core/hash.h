#pragma once
// FNV-1a, 64 bits: fingerprints of data sets, models and configurations (not a cryptographic hash).
#include <cstddef>
#include <cstdint>
#include <string>

namespace lora {

struct Fnv1a {
  uint64_t value = 1469598103934665603ULL;

  Fnv1a& add(const void* data, size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < bytes; ++i) value = (value ^ p[i]) * 1099511628211ULL;
    return *this;
  }
  Fnv1a& add(int64_t v) { return add(&v, sizeof v); }  // little-endian bytes, low first
  Fnv1a& add(const std::string& s) { return add(int64_t(s.size())).add(s.data(), s.size()); }
};

}  // namespace lora
