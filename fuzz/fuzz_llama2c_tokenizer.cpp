// llama2.c tokenizer.bin (u32 max_token_length, then score / length / bytes per token): the format
// sniffing, the load, and encoding and decoding a text with whatever vocabulary came out.
#include "fuzz_input.h"
#include "tokenizer/loaders.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  lora::fuzz::expect_clean([&] {
    (void)lora::looks_like_llama2c_tokenizer(bytes);
    const auto tok = lora::load_llama2c_tokenizer("tokenizer.bin", bytes);
    const auto ids = tok->encode("Once upon a time, <s> there was \xC3\xA9 \xF0\x9F\x98\x80 123");
    (void)tok->decode(ids);
    for (int32_t id = 0; id < tok->vocab_size() && id < 64; ++id) (void)tok->token_bytes(id);
  });
  return 0;
}
