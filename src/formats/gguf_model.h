#pragma once
// A GGUF model file (llama.cpp's llama / qwen2 architectures) as a lora::Model.
#include <string>

#include "formats/gguf.h"
#include "formats/model_loader.h"

namespace lora {

// The config the metadata describes (<arch>.embedding_length, .block_count, ...); throws FormatError
// naming the file for an unsupported architecture or a missing key.
ModelConfig gguf_model_config(const GGUFFile& gguf);

// The query_pre_attn_scalar llama.cpp's Gemma 2 / 3 graphs use (GGUF has no key for it): hidden/heads for the
// 27B models, head_dim for the others.
float gguf_query_pre_attn_scalar(const ModelConfig& c);

// F32/BF16 tensors stay views into the mapped file; F16 and quantized tensors become f32. For the
// llama architecture wq/wk (stored in interleaved RoPE order) are permuted to rotate_half order; qwen2
// files already use that order (llama.cpp runs them with NEOX RoPE).
Model load_gguf_model(const std::string& path, const LoadOptions& options = {});

}  // namespace lora
