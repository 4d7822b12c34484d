// llama.cpp LoRA adapters in GGUF (adapter.type, adapter.lora.alpha, <tensor>.lora_a / .lora_b pairs).
#include "adapters/adapter_io.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lora::fuzz::write_input("adapter.gguf", {reinterpret_cast<const char*>(data), size});
  lora::fuzz::expect_clean([&] { (void)lora::read_adapter(path); });
  return 0;
}
