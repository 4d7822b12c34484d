#pragma once
// A model of any shape with random weights, for tests and benchmarks (no file needed): linear
// weights ~ N(0, 0.02) like Hugging Face's initializer_range, norms around 1, biases small.
#include <cstdint>

#include "core/dtype.h"
#include "model/model.h"

namespace lora {

Model random_model(const ModelConfig& config, uint64_t seed, DType weight_dtype = DType::F32);

// Shapes of published models, for benchmarks.
ModelConfig smollm2_135m_config();
ModelConfig qwen25_05b_config();

}  // namespace lora
