// llama2.c checkpoints (the 7 x int32 header, the fp32 tensors after it): the header check and the load,
// with a tokenizer.bin beside it when the input carries one after the separator.
#include "formats/llama2c.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = lora::fuzz::split_input({reinterpret_cast<const char*>(data), size}, "LORAFUZZTOK");
  const std::string_view model = parts.first, tokenizer = parts.second;
  const std::string path = lora::fuzz::write_input("model.bin", model);
  lora::fuzz::write_input("tokenizer.bin", tokenizer);
  lora::fuzz::expect_clean([&] {
    (void)lora::parse_llama2c_header(reinterpret_cast<const uint8_t*>(model.data()), model.size());
    const lora::Model m = lora::load_llama2c(path, {.load_tokenizer = !tokenizer.empty()});
  });
  return 0;
}
