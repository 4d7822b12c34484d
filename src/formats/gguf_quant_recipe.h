#pragma once
// llama-quantize's recipes: which ggml type each tensor of a GGUF model gets for a file type such as
// Q4_K_M (most weights Q4_K; attn_v and ffn_down of the layers use_more_bits picks, and the output
// matrix, in Q6_K). The rules are llama.cpp's llama_tensor_get_type for dense Llama-family models
// without an importance matrix; a tensor whose rows are not whole blocks of its type falls back the way
// llama.cpp does (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K/IQ4_XS -> IQ4_NL, then F16).
#include <string>
#include <vector>

#include "model/model.h"

namespace lora {

struct GGUFQuantRecipe {
  const char* name;     // "q4_k_m", as llama-quantize spells the type argument (lower case)
  DType base;           // the type of most weights
  uint32_t file_type;   // llama.cpp's LLAMA_FTYPE_MOSTLY_* number (general.file_type)
};

// The recipe for a name (case-insensitive: "Q4_K_M" or "q4_k_m"); throws lora::Error listing the names.
const GGUFQuantRecipe& gguf_quant_recipe(const std::string& name);
std::vector<std::string> gguf_quant_recipe_names();

// What the recipe gives the tensor `gguf_name` ("token_embd.weight", "output.weight", "blk.3.attn_v.weight",
// ...) whose rows hold `row_length` values: a ggml block type or F16 (the last fallback).
DType gguf_tensor_type(const GGUFQuantRecipe& recipe, const std::string& gguf_name, int64_t row_length,
                       const ModelConfig& config);

struct GGUFQuantSummary {
  std::vector<std::pair<DType, int64_t>> tensors_per_type;  // in order of first use
  size_t bytes = 0;
  int64_t elements = 0;
};

// Quantizes the embedding, output and every linear weight of `m` in place by the recipe (norms and
// biases stay f32, as llama.cpp keeps every 1-D tensor). A weight already in a ggml block type is
// decoded first (re-quantization, as llama-quantize --allow-requantize does).
GGUFQuantSummary quantize_model_for_gguf(Model& m, const GGUFQuantRecipe& recipe);

}  // namespace lora
