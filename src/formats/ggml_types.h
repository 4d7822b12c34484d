#pragma once
// ggml tensor types: block geometry of every type a GGUF file may hold, so a reader can bounds-check
// tensors it cannot decode (the ones it decodes are in core/ggml_quant.h).
#include <cstddef>
#include <cstdint>
#include <optional>

namespace lora {

struct GGMLTypeTraits {
  const char* name;      // "F32", "Q8_0", ... as ggml spells them
  int64_t block_size;    // elements per block (1 for plain types)
  size_t type_size;      // bytes per block
};

// Traits of ggml type `type`, or nullopt for a number ggml does not define.
std::optional<GGMLTypeTraits> ggml_type_traits(uint32_t type);

}  // namespace lora
