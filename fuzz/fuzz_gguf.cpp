// GGUF: header, typed metadata (arrays of arrays included), tensor infos, and the tensors themselves:
// plain types as views, every ggml block type as a quantized view that is then dequantized to f32 (the
// block scales and codes of hostile data); then the tokenizer a GGUF file embeds and the model config.
#include "formats/gguf.h"
#include "formats/gguf_model.h"
#include "fuzz_input.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lora::fuzz::write_input("model.gguf", {reinterpret_cast<const char*>(data), size});
  lora::fuzz::expect_clean([&] {
    const lora::GGUFFile f = lora::GGUFFile::open(path);
    for (const lora::GGUFTensorInfo& info : f.tensors()) {
      lora::fuzz::expect_clean([&] {
        const lora::Tensor t = f.load_tensor(info.name);
        // Dequantizing costs time per element; the harness' inputs are small, their claims are not.
        if (t.numel() <= (int64_t(1) << 16)) (void)t.to(lora::DType::F32);
      });
    }
    lora::fuzz::expect_clean([&] { (void)lora::gguf_model_config(f); });
    const auto tok = lora::load_tokenizer_from_gguf(f);
    (void)tok->decode(tok->encode("Hello world <s> 123 \xE2\x96\x81\xF0\x9F\x98\x80"));
  });
  return 0;
}
