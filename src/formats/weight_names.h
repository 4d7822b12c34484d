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
  // Part `fused_part` of a tensor that the files store fused (Phi-3's qkv_proj holds q, k and v; its gate_up_proj
  // gate and up, in that order of rows): hf_name and gguf_name then name the fused tensor. -1: a tensor of its own.
  int fused_part = -1;
};

// Every tensor of a layer, with the q/k/v biases only when the config has attention_bias and the q/k head
// norms only when it has qk_norm.
std::vector<LayerTensorSpec> layer_tensor_specs(const ModelConfig& config);
// The specs that share spec's fused tensor, in row order (spec alone when it is not fused).
std::vector<LayerTensorSpec> fused_group(const LayerTensorSpec& spec, const std::vector<LayerTensorSpec>& specs);
// Rows [begin, end) of the fused tensor that hold spec's part, and the fused tensor's shape.
std::pair<int64_t, int64_t> fused_rows(const LayerTensorSpec& spec, const ModelConfig& config);
std::vector<int64_t> fused_shape(const LayerTensorSpec& spec, const ModelConfig& config);
// The readers' half: each part of spec's fused tensor `whole` set in w as the row range it holds.
void assign_fused_parts(LayerWeights& w, const Tensor& whole, const LayerTensorSpec& spec,
                        const std::vector<LayerTensorSpec>& specs, const ModelConfig& config);

// Row-major shape the config implies for the tensor.
std::vector<int64_t> expected_shape(const LayerTensorSpec& spec, const ModelConfig& config);
// Heads the rows split into for the RoPE permutation (0 when spec.rope is None).
int64_t rope_heads(const LayerTensorSpec& spec, const ModelConfig& config);

std::string hf_layer_name(int64_t layer, const LayerTensorSpec& spec);    // "model.layers.3.self_attn.q_proj.weight"
std::string gguf_layer_name(int64_t layer, const LayerTensorSpec& spec);  // "blk.3.attn_q.weight"

// Throws FormatError naming `path` and `name` with expected vs found shape when they differ.
void check_shape(const std::string& path, const std::string& name, const Tensor& t, const std::vector<int64_t>& expected);

}  // namespace lora
