#pragma once
// Chat templates by name, as LLaMA-Factory and the models' own tokenizer_config.json define them:
// chatml (Qwen), qwen3 (chatml with Qwen3's thinking blocks), gemma, llama3, llama2, mistral, alpaca, vicuna, plain.
//
// A conversation is rendered as segments: prompt text (system prompt, user turns, the assistant
// header) and responses. Training and chat encode the segments one by one, the same way, so the
// model sees at chat time exactly the token sequence it was trained on; only response segments are
// trained by default.
#include <optional>
#include <string>
#include <vector>

#include "data/sample.h"

namespace lora {

struct Segment {
  std::string text;
  bool response = false;  // an assistant reply (trained on by default)
  bool bos = false;       // a BOS token before the text
  bool eos = false;       // an EOS token after the text
};

struct ChatTemplate {
  std::string name;
  // Formats with "{content}" (and "{system}" in first_user) replaced.
  std::string system;      // a system prompt on its own; empty when it is folded into first_user
  std::string first_user;  // the first user turn when there is a system prompt and `system` is empty
  std::string user;        // a user turn, followed by the assistant header
  std::string assistant;   // an assistant reply, with its end-of-turn marker
  bool eos_after_reply = false;  // an EOS token ends each reply
  bool bos_every_turn = false;   // each user turn starts with BOS (llama2)
  std::vector<std::string> stop;  // text that ends a reply, besides the EOS token
  // Qwen3's thinking: the last reply is written "<think>\n{reasoning}\n</think>\n\n{answer}" (an empty
  // reasoning block when the reply brings none), earlier replies lose their reasoning, as its template does.
  bool thinking = false;
  bool trim_content = false;  // message contents lose surrounding whitespace (Gemma's `| trim`)
  std::string jinja;  // the same template in the Hugging Face chat_template language
};

// chatml, qwen3, gemma, phi3, llama3, llama2, mistral, alpaca, vicuna, plain.
const std::vector<std::string>& chat_template_names();
// The template of that name; an unknown name throws lora::Error listing the valid ones.
const ChatTemplate& chat_template(const std::string& name);
// The named template that a tokenizer_config.json chat_template (Jinja text) implements, recognised
// by its markers; nullopt when it is none of them.
std::optional<std::string> detect_chat_template(const std::string& jinja);

// Renders system + messages (user, assistant, user, ...). When the last message is from the user,
// the result ends with the assistant header: the prompt for generating the next reply. Messages
// must alternate starting with the user; otherwise lora::Error names the message.
std::vector<Segment> render_chat(const ChatTemplate& t, const std::string& system, const std::vector<ChatMessage>& messages);

}  // namespace lora
