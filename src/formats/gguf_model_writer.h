#pragma once
// A lora::Model as a GGUF model file in llama.cpp's layout (what convert_hf_to_gguf.py writes for the
// llama and qwen2 architectures): hyper-parameters under <arch>.*, the tokenizer under tokenizer.ggml.*,
// tensors token_embd / blk.N.* / output_norm / output (left out when tied), norms and biases in F32.
// For the llama architecture the q/k rows are written in GGUF's interleaved RoPE order.
#include <cstdint>
#include <optional>
#include <string>

#include "core/dtype.h"
#include "model/model.h"

namespace lora {

// `dtype` (F32, F16 or BF16) for the linear and embedding weights; default: as they are in memory (ggml
// block types written as they are, bitsandbytes' formats decoded). `ftype` is llama.cpp's file type for
// general.file_type (default: from the first linear weight's type). Written atomically. Throws
// lora::Error when the model has no tokenizer (llama.cpp needs one), for a tokenizer or RoPE scaling
// GGUF cannot express here, or for an unsupported architecture.
void save_gguf_model(const Model& model, const std::string& path, std::optional<DType> dtype = {},
                     std::optional<uint32_t> ftype = {});

}  // namespace lora
