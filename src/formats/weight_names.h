#pragma once
// The per-layer tensors of the model and their names in each format, in one table shared by the
// loaders, the writers and the adapter code (which names LoRA targets after the same modules).
#include <string>
#include <vector>

#include "model/model.h"

namespace lora {

enum class WeightKind { Linear, Norm, Bias };
// Which head count the rows of a tensor are split by for the RoPE row permutation (none: not RoPE'd).
enum class RopeRows { None, QueryHeads, KeyValueHeads };

struct LayerTensorSpec {
  const char* hf_name;    // under "model.layers.N.", e.g. "self_attn.q_proj.weight"
  const char* gguf_name;  // under "blk.N.", e.g. "attn_q.weight"
  Tensor LayerWeights::*member;
  WeightKind kind;
  RopeRows rope;
};

// Every tensor of a layer, with the q/k/v biases only when the config has attention_bias and the q/k head
// norms only when it has qk_norm.
std::vector<LayerTensorSpec> layer_tensor_specs(const ModelConfig& config);
// Row-major shape the config implies for the tensor.
std::vector<int64_t> expected_shape(const LayerTensorSpec& spec, const ModelConfig& config);
// Heads the rows split into for the RoPE permutation (0 when spec.rope is None).
int64_t rope_heads(const LayerTensorSpec& spec, const ModelConfig& config);

std::string hf_layer_name(int64_t layer, const LayerTensorSpec& spec);    // "model.layers.3.self_attn.q_proj.weight"
std::string gguf_layer_name(int64_t layer, const LayerTensorSpec& spec);  // "blk.3.attn_q.weight"

// Throws FormatError naming `path` and `name` with expected vs found shape when they differ.
void check_shape(const std::string& path, const std::string& name, const Tensor& t, const std::vector<int64_t>& expected);

}  // namespace lora
