// Chat templates: recognising a tokenizer_config.json's Jinja chat_template (its markers), and rendering
// hostile conversations (roles, contents with braces and template markers) with every named template.
#include "data/chat_template.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  lora::fuzz::expect_clean([&] { (void)lora::detect_chat_template(std::string(bytes)); });
  // The rest: a system prompt and messages separated by the marker, each "role:content".
  std::string system;
  std::vector<lora::ChatMessage> messages;
  std::string_view rest = bytes;
  bool first = true;
  while (!rest.empty()) {
    auto [part, after] = lora::fuzz::split_input(rest, "\x1e");
    if (first) {
      system = part;
      first = false;
    } else {
      const auto [role, content] = lora::fuzz::split_input(part, ":");
      messages.push_back({std::string(role), std::string(content)});
    }
    rest = after;
  }
  for (const std::string& name : lora::chat_template_names())
    lora::fuzz::expect_clean([&] { (void)lora::render_chat(lora::chat_template(name), system, messages); });
  return 0;
}
