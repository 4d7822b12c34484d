// lora serve's request bodies: chat completions, completions, load and unload adapter; the first byte
// picks the endpoint. A bad body must be an ApiError (a lora::Error) that becomes a 400.
#include "fuzz_input.h"
#include "serve/api_error.h"
#include "serve/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  lora::fuzz::expect_clean([&] {
    try {
      switch (data[0] & 3) {
        case 0: (void)lora::serve::parse_chat_request(body); break;
        case 1: (void)lora::serve::parse_completion_request(body); break;
        case 2: (void)lora::serve::parse_load_adapter_request(body); break;
        default: (void)lora::serve::parse_unload_adapter_request(body); break;
      }
    } catch (const lora::serve::ApiError& e) {
      if (e.status != 400) {
        std::fprintf(stderr, "fuzz: a request body was answered %d, not 400: %s\n", e.status, e.what());
        std::abort();
      }
    }
  });
  return 0;
}
