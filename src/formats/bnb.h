#pragma once
// bitsandbytes' state-dict layout of quantized linear weights, as transformers saves and loads
// "bnb-4bit" / 8-bit checkpoints (SPEC.md section 5). For a weight `<p>.weight` of shape [out, in]:
//
//   4-bit  <p>.weight                                  u8 [(n+1)/2, 1]  packed codes, high nibble first
//          <p>.weight.absmax                           f32 [blocks], or u8 [blocks] with double quantization
//          <p>.weight.quant_map                        f32 [16]
//          <p>.weight.nested_absmax                    f32 [ceil(blocks/256)]   (double quantization)
//          <p>.weight.nested_quant_map                 f32 [256]                (double quantization)
//          <p>.weight.quant_state.bitsandbytes__nf4    u8: the bytes of json.dumps({"quant_type", "blocksize",
//                                                      "dtype", "shape", "nested_blocksize", "nested_dtype",
//                                                      "nested_offset"})   (__fp4 for FP4)
//   8-bit  <p>.weight         i8 [out, in]    LLM.int8() row-wise codes
//          <p>.SCB            f32 [out]       each row's absmax
//          <p>.weight_format  u8 scalar 0     row-major (the only layout bitsandbytes still writes)
//
// and config.json carries a "quantization_config" with quant_method "bitsandbytes".
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/quant.h"
#include "core/tensor.h"

namespace lora {

// Finds a checkpoint tensor by name (across shards); nullopt when absent.
using TensorLookup = std::function<std::optional<Tensor>(const std::string& name)>;

// The weight `name` as a quantized tensor when the checkpoint stores it in bitsandbytes' layout, or
// nullopt when it is a plain tensor. Inconsistent state (sizes, JSON, dtypes) throws FormatError naming
// `where` and the offending key.
std::optional<Tensor> load_bnb_weight(const TensorLookup& find, const std::string& where, const std::string& name,
                                      const std::vector<int64_t>& shape);

// Adds the tensors bitsandbytes saves for the quantized weight `name` (".../q_proj.weight") to `out`.
void add_bnb_tensors(const std::string& name, const Tensor& q, std::map<std::string, Tensor>& out);

// The bytes of "quant_state.bitsandbytes__<type>": json.dumps of the non-tensor state, byte for byte as
// Python writes it.
std::string bnb_quant_state_json(const QuantState& s, const std::vector<int64_t>& shape);

// config.json "quantization_config" as transformers' BitsAndBytesConfig.to_dict() writes it for weights
// quantized like `s` (compute dtype bf16, as the matrix multiply here computes).
nlohmann::json bnb_quantization_config(const QuantState& s);

}  // namespace lora
