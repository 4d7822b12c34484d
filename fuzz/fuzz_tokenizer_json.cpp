// Hugging Face tokenizer.json (BPE, byte-level, SentencePiece-style BPE, added tokens, normalizers,
// pre-tokenizer regexes, decoders, post-processors), with a tokenizer_config.json beside it when the input
// carries one after the separator; then a text through encode and decode.
#include "fuzz_input.h"
#include "tokenizer/loaders.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [json, config] = lora::fuzz::split_input({reinterpret_cast<const char*>(data), size}, "LORAFUZZCFG");
  const std::string path = lora::fuzz::write_input("tokenizer.json", json);
  const std::string config_path = lora::fuzz::scratch_dir() + "/tokenizer_config.json";
  if (config.empty()) std::filesystem::remove(config_path);
  else lora::fuzz::write_input("tokenizer_config.json", config);
  lora::fuzz::expect_clean([&] {
    const auto tok = lora::load_hf_tokenizer_json(path);
    const auto ids = tok->encode("Hello  world! <|im_start|>user\n caf\xC3\xA9 123 \xF0\x9F\x98\x80\t");
    (void)tok->decode(ids);
    (void)tok->decode(ids, true);
  });
  return 0;
}
