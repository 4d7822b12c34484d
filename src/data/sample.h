#pragma once
// A dataset record once its file format is known: either a conversation (system prompt and
// alternating user / assistant turns), rendered through a chat template, or a plain text trained on
// as a whole.
#include <string>
#include <vector>

namespace lora {

struct ChatMessage {
  std::string role;  // "user" or "assistant"
  std::string content;
};

struct Sample {
  bool is_text = false;               // plain text: no template, every token trained
  std::string text;                   // when is_text
  std::string system;                 // may be empty
  std::vector<ChatMessage> messages;  // user, assistant, user, assistant, ... ending with assistant
  std::string origin;                 // "data.jsonl:17", for messages about this record
};

}  // namespace lora
