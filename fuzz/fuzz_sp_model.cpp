// SentencePiece tokenizer.model: the protobuf decoder (varints, lengths, nested messages), then the
// tokenizer built from it, encoding and decoding a text.
#include "fuzz_input.h"
#include "tokenizer/loaders.h"
#include "tokenizer/sp_model_proto.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  lora::fuzz::expect_clean([&] { (void)lora::parse_sp_model_proto(bytes, "tokenizer.model"); });
  lora::fuzz::expect_clean([&] {
    const auto tok = lora::load_sentencepiece_model("tokenizer.model", bytes);
    (void)tok->decode(tok->encode("Hello world <s> \xC3\xA9\xF0\x9F\x98\x80  12"));
  });
  return 0;
}
