// Hugging Face model folders: config.json (every family's fields, rope_scaling, layer_types, soft caps,
// quantization_config) and model.safetensors (the tensors each family needs, their shapes and dtypes,
// bitsandbytes' quantized forms), the input's two parts around the separator, read as load_model reads a
// folder (without a tokenizer: fuzz_tokenizer_json and fuzz_sp_model cover those).
#include "formats/model_loader.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [config, tensors] = lora::fuzz::split_input({reinterpret_cast<const char*>(data), size}, "LORAFUZZST");
  lora::fuzz::write_input("config.json", config);
  lora::fuzz::write_input("model.safetensors", tensors);
  lora::LoadOptions options;
  options.load_tokenizer = false;
  lora::fuzz::expect_clean([&] { (void)lora::load_model(lora::fuzz::scratch_dir(), options); });
  return 0;
}
