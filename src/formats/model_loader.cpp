#include "formats/model_loader.h"

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/gguf_model.h"
#include "formats/hf_folder.h"
#include "formats/llama2c.h"
#include "formats/weight_names.h"
#include "model/quantize_model.h"
#include "tokenizer/tokenizer.h"

namespace lora {

namespace fs = std::filesystem;

namespace {

// Converts linear and embedding weights (never norms or biases) to `dtype`, keeping a tied lm_head tied.
void convert_weights(Model& m, DType dtype) {
  if (dtype != DType::F32 && dtype != DType::BF16)
    fail("weight dtype must be f32 or bf16, not {}", dtype_name(dtype));
  auto convert = [&](Tensor& t) {
    if (!t.empty() && !t.quantized() && t.dtype() != dtype) t = t.to(dtype);
  };
  ModelWeights& w = m.weights;
  const bool tied = w.lm_head.data() == w.tok_embeddings.data();
  convert(w.tok_embeddings);
  if (tied) w.lm_head = w.tok_embeddings;
  else convert(w.lm_head);
  const std::vector<LayerTensorSpec> specs = layer_tensor_specs(m.config);
  for (LayerWeights& l : w.layers)
    for (const LayerTensorSpec& s : specs)
      if (s.kind == WeightKind::Linear) convert(l.*s.member);
}

}  // namespace

std::string detect_model_format(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(fs::path(path) / "config.json")) return "hf";
    fail_format(path, "not a Hugging Face model folder (no config.json)");
  }
  if (!fs::exists(path, ec)) fail_format(path, "no such file or folder");
  const auto file = MappedFile::open(path);
  if (file->size() >= 4 && std::memcmp(file->data(), "GGUF", 4) == 0) return "gguf";
  if (parse_llama2c_header(file->data(), file->size())) return "llama2c";
  if (fs::path(path).extension() == ".safetensors")
    fail_format(path, "a bare safetensors file; pass the folder holding it and its config.json");
  fail_format(path, "not a Hugging Face folder, GGUF or llama2.c checkpoint");
}

Model load_model(const std::string& path, const LoadOptions& options) {
  std::optional<QuantConfig> quant;  // checked before the (possibly long) load
  if (!options.quantize.empty()) quant = QuantConfig{quant_type_from_name(options.quantize), options.double_quant};
  const std::string format = detect_model_format(path);
  Model m = format == "hf"     ? load_hf_folder(path, options)
            : format == "gguf" ? load_gguf_model(path, options)
                               : load_llama2c(path, options);
  if (options.load_tokenizer && !options.tokenizer_path.empty()) m.tokenizer = load_tokenizer(options.tokenizer_path);
  if (options.weight_dtype) convert_weights(m, *options.weight_dtype);
  if (quant) quantize_linear_weights(m, *quant);
  return m;
}

}  // namespace lora
