#pragma once
// A model of any shape with random weights, for tests and benchmarks (no file needed): linear
// weights ~ N(0, 0.02) like Hugging Face's initializer_range, norms around 1, biases small.
#include <cstdint>

#include <string>

#include "core/dtype.h"
#include "core/quant.h"
#include "model/model.h"

namespace lora {

Model random_model(const ModelConfig& config, uint64_t seed, DType weight_dtype = DType::F32);

// The same kind of model with its linear weights created directly in quantized form, one weight at a
// time, so that a 7B-shaped QLoRA base never exists in full precision (28 GB in f32). Embeddings and
// lm_head are `dense_dtype`. The normal draws run in parallel from a counter-based stream, so the values
// differ from random_model's (same distributions).
Model random_quantized_model(const ModelConfig& config, uint64_t seed, const QuantConfig& quant,
                             DType dense_dtype = DType::BF16);

// Shapes of published models, for benchmarks.
ModelConfig smollm2_135m_config();
ModelConfig qwen25_05b_config();
ModelConfig qwen3_06b_config();
ModelConfig smollm3_3b_config();
ModelConfig gemma3_1b_config();
ModelConfig phi3_mini_config();  // microsoft/Phi-3-mini-4k-instruct (fused qkv_proj, gate_up_proj)
ModelConfig llama2_7b_config();
// "smollm2-135m", "qwen2.5-0.5b", "qwen3-0.6b", "smollm3-3b", "llama2-7b"; throws lora::Error listing them otherwise.
ModelConfig model_config_by_name(const std::string& name);

}  // namespace lora
