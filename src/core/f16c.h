#pragma once
// The fp16 stored at p (a ggml block's scale), by the F16C instruction: exact, like f16_to_f32, without its
// call and branches. For the AVX-512 kernels only (every AVX-512 CPU has F16C).
#include <cstdint>
#include <cstring>

#include <immintrin.h>

namespace lora {

inline float f16c_load(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

}  // namespace lora
