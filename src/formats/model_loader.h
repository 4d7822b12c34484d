#pragma once
// Loads a model from any supported source into lora::Model:
//   - a Hugging Face folder (config.json + model.safetensors or model.safetensors.index.json),
//   - a .gguf file (llama / qwen2 architectures; F32, F16, BF16, Q8_0 tensors),
//   - a llama2.c .bin checkpoint (tokenizer.bin or tok<vocab>.bin beside it).
#include <optional>
#include <string>

#include "core/dtype.h"
#include "model/model.h"

namespace lora {

struct LoadOptions {
  std::string tokenizer_path{};          // overrides the tokenizer found with the model
  std::optional<DType> weight_dtype{};   // convert linear/embedding weights to F32 or BF16 (not quantized ones)
  bool load_tokenizer = true;
  // "nf4", "fp4" or "int8": quantize the linear layers on load (QLoRA's base; core/quant.h), whatever the
  // source format. A bitsandbytes checkpoint loads quantized without it.
  std::string quantize{};
  bool double_quant = true;              // for the 4-bit types
};

// "hf", "gguf" or "llama2c"; throws FormatError when the path is none of them.
std::string detect_model_format(const std::string& path);
Model load_model(const std::string& path, const LoadOptions& options = {});

// Writes `model` as a self-contained Hugging Face folder: config.json, model.safetensors (HF tensor
// names, HF q/k order), generation_config.json, and tokenizer.json + tokenizer_config.json. Quantized
// linear weights are written in bitsandbytes' layout with a "quantization_config" (formats/bnb.h),
// unless `dtype` asks for every weight in that dtype (then they are dequantized). With
// `tokenizer_files_from` (a Hugging Face model folder) its tokenizer and generation files are copied as
// they are instead (tokenizer.json, tokenizer_config.json, tokenizer.model, special_tokens_map.json,
// added_tokens.json, generation_config.json, chat_template.jinja: whichever exist).
void save_hf_folder(const Model& model, const std::string& dir, std::optional<DType> dtype = {},
                    const std::string& tokenizer_files_from = "");

}  // namespace lora
