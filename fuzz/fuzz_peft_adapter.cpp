// PEFT adapter folders: adapter_config.json (r, lora_alpha, target_modules, rank_pattern, AdaLoRA's keys ...)
// and adapter_model.safetensors, the input's two parts around the separator, read as read_adapter does.
#include "adapters/adapter_io.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [config, tensors] = lora::fuzz::split_input({reinterpret_cast<const char*>(data), size}, "LORAFUZZST");
  lora::fuzz::write_input("adapter_config.json", config);
  lora::fuzz::write_input("adapter_model.safetensors", tensors);
  lora::fuzz::expect_clean([&] { (void)lora::read_adapter(lora::fuzz::scratch_dir()); });
  return 0;
}
