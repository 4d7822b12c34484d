#include "data/chat_template.h"

#include <fmt/format.h>

#include "core/error.h"

namespace lora {

namespace {

// The Jinja text starts with a comment naming the template, so that a tokenizer_config.json written
// here (lora init) is recognised exactly; other tools ignore the comment.
std::string marked(const std::string& name, const std::string& body) {
  return "{#- lora.cpp template: " + name + " -#}" + body;
}

std::vector<ChatTemplate> make_templates() {
  std::vector<ChatTemplate> v;
  {
    ChatTemplate t;
    t.name = "chatml";
    t.system = "<|im_start|>system\n{content}<|im_end|>\n";
    t.user = "<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n";
    t.assistant = "{content}<|im_end|>\n";
    t.stop = {"<|im_end|>"};
    t.jinja = marked(t.name,
                     "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                     "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                     "{% endif %}");
    v.push_back(t);
  }
  {
    ChatTemplate t = v.back();
    t.name = "qwen3";
    t.thinking = true;
    t.jinja = marked(t.name,
                     "{%- set ns = namespace(last_query=-1) %}{%- for message in messages[::-1] %}{%- if "
                     "message['role'] == 'user' and ns.last_query == -1 %}{%- set ns.last_query = "
                     "messages|length - 1 - loop.index0 %}{%- endif %}{%- endfor %}{%- for message in messages %}{%- if "
                     "message['role'] == 'assistant' %}{%- set content = message['content'] %}{%- set reasoning = '' %}{%- if "
                     "'</think>' in content %}{%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\n') "
                     "%}{%- set content = content.split('</think>')[-1].lstrip('\n') %}{%- endif %}{{ '<|im_start|>assistant\n' }}"
                     "{%- if loop.index0 > ns.last_query %}{{ '<think>\n' + reasoning + '\n</think>\n\n' }}{%- endif %}"
                     "{{ content + '<|im_end|>\n' }}{%- else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
                     "+ '<|im_end|>\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                     "{%- endif %}");
    v.push_back(t);
  }
  {
    // Gemma (2 and 3): no system role, the system prompt opens the first user turn; replies are the "model" turns;
    // contents are trimmed as its template's `| trim` does.
    ChatTemplate t;
    t.name = "gemma";
    t.first_user = "<start_of_turn>user\n{system}\n\n{content}<end_of_turn>\n<start_of_turn>model\n";
    t.user = "<start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n";
    t.assistant = "{content}<end_of_turn>\n";
    t.stop = {"<end_of_turn>"};
    t.trim_content = true;
    t.jinja = marked(t.name,
                     "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = "
                     "messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set "
                     "first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}{%- for message in "
                     "loop_messages -%}{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
                     "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}{{ "
                     "message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}"
                     "{{ '<start_of_turn>model\n' }}{%- endif -%}");
    v.push_back(t);
  }
  {
    // Phi-3 and Phi-3.5 (microsoft/Phi-3.5-mini-instruct's template, its generation prompt; an empty system prompt
    // is left out as it does).
    ChatTemplate t;
    t.name = "phi3";
    t.system = "<|system|>\n{content}<|end|>\n";
    t.user = "<|user|>\n{content}<|end|>\n<|assistant|>\n";
    t.assistant = "{content}<|end|>\n";
    t.stop = {"<|end|>"};
    t.jinja = marked(t.name,
                     "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{ "
                     "'<|system|>\n' + message['content'] + '<|end|>\n' }}{% elif message['role'] == 'user' %}{{ "
                     "'<|user|>\n' + message['content'] + '<|end|>\n' }}{% elif message['role'] == 'assistant' %}{{ "
                     "'<|assistant|>\n' + message['content'] + '<|end|>\n' }}{% endif %}{% endfor %}{% if "
                     "add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}");
    v.push_back(t);
  }
  {
    ChatTemplate t;
    t.name = "llama3";
    t.system = "<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>";
    t.user = "<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
    t.assistant = "{content}<|eot_id|>";
    t.stop = {"<|eot_id|>"};
    t.jinja = marked(t.name,
                     "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                     "'<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}{% endfor %}{% if "
                     "add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}");
    v.push_back(t);
  }
  {
    ChatTemplate t;
    t.name = "llama2";
    t.first_user = "[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{content} [/INST]";
    t.user = "[INST] {content} [/INST]";
    t.assistant = "{content}";
    t.eos_after_reply = true;
    t.bos_every_turn = true;
    t.jinja = marked(t.name,
                     "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set messages "
                     "= messages[1:] %}{% else %}{% set system = '' %}{% endif %}{% for message in messages %}{% if "
                     "message['role'] == 'user' %}{% if loop.first and system %}{{ bos_token + '[INST] <<SYS>>\\n' + "
                     "system + '\\n<</SYS>>\\n\\n' + message['content'] + ' [/INST]' }}{% else %}{{ bos_token + '[INST] ' "
                     "+ message['content'] + ' [/INST]' }}{% endif %}{% else %}{{ ' ' + message['content'] + ' ' + "
                     "eos_token }}{% endif %}{% endfor %}");
    v.push_back(t);
  }
  {
    ChatTemplate t;
    t.name = "mistral";
    t.first_user = "[INST] {system}\n\n{content} [/INST]";
    t.user = "[INST] {content} [/INST]";
    t.assistant = "{content}";
    t.eos_after_reply = true;
    t.jinja = marked(t.name,
                     "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] + "
                     "'\\n\\n' %}{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}{% for message "
                     "in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + (system if loop.first else '') + "
                     "message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% "
                     "endfor %}");
    v.push_back(t);
  }
  {
    ChatTemplate t;
    t.name = "alpaca";
    t.system = "{content}\n\n";
    t.user = "### Instruction:\n{content}\n\n### Response:\n";
    t.assistant = "{content}";
    t.eos_after_reply = true;
    t.jinja = marked(t.name,
                     "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' "
                     "}}{% elif message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n### "
                     "Response:\\n' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}");
    v.push_back(t);
  }
  {
    ChatTemplate t;
    t.name = "vicuna";
    t.system = "{content} ";
    t.user = "USER: {content} ASSISTANT:";
    t.assistant = "{content}";
    t.eos_after_reply = true;
    t.jinja = marked(t.name,
                     "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + ' ' }}{% "
                     "elif message['role'] == 'user' %}{{ 'USER: ' + message['content'] + ' ASSISTANT:' }}{% else %}{{ ' "
                     "' + message['content'] + eos_token }}{% endif %}{% endfor %}");
    v.push_back(t);
  }
  {
    ChatTemplate t;
    t.name = "plain";
    t.system = "{content}\n";
    t.user = "{content}\n";
    t.assistant = "{content}";
    t.eos_after_reply = true;
    t.jinja = marked(t.name,
                     "{% for message in messages %}{% if message['role'] == 'assistant' %}{{ message['content'] + "
                     "eos_token }}{% else %}{{ message['content'] + '\\n' }}{% endif %}{% endfor %}");
    v.push_back(t);
  }
  return v;
}

const std::vector<ChatTemplate>& templates() {
  static const std::vector<ChatTemplate> v = make_templates();
  return v;
}

// One pass over the format, so that a "{content}" inside a message is never taken for a placeholder.
std::string fill(const std::string& format, const std::string& content, const std::string& system = "") {
  std::string out;
  for (size_t i = 0; i < format.size();) {
    if (format.compare(i, 9, "{content}") == 0) {
      out += content;
      i += 9;
    } else if (format.compare(i, 8, "{system}") == 0) {
      out += system;
      i += 8;
    } else {
      out += format[i++];
    }
  }
  return out;
}

// Qwen3's template: a reply's reasoning is what precedes "</think>" (inside "<think>"); the last reply keeps it,
// in a block that is written even when empty, and earlier replies drop it.
std::string qwen3_reply(const std::string& content, bool last) {
  std::string reasoning, answer = content;
  if (const size_t end = content.find("</think>"); end != std::string::npos) {
    reasoning = content.substr(0, end);
    if (const size_t begin = reasoning.rfind("<think>"); begin != std::string::npos) reasoning = reasoning.substr(begin + 7);
    const size_t a = reasoning.find_first_not_of('\n'), b = reasoning.find_last_not_of('\n');
    reasoning = a == std::string::npos ? "" : reasoning.substr(a, b - a + 1);
    answer = content.substr(end + 8);
    answer.erase(0, std::min(answer.find_first_not_of('\n'), answer.size()));
  }
  return last ? "<think>\n" + reasoning + "\n</think>\n\n" + answer : answer;
}

}  // namespace

const std::vector<std::string>& chat_template_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const ChatTemplate& t : templates()) n.push_back(t.name);
    return n;
  }();
  return names;
}

const ChatTemplate& chat_template(const std::string& name) {
  for (const ChatTemplate& t : templates())
    if (t.name == name) return t;
  fail("unknown chat template '{}' (valid: {})", name, fmt::join(chat_template_names(), ", "));
}

std::optional<std::string> detect_chat_template(const std::string& jinja) {
  auto has = [&](const char* s) { return jinja.find(s) != std::string::npos; };
  const std::string marker = "lora.cpp template: ";
  if (const size_t at = jinja.find(marker); at != std::string::npos) {
    const size_t begin = at + marker.size(), end = jinja.find(' ', begin);
    const std::string name = jinja.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    for (const std::string& n : chat_template_names())
      if (n == name) return n;
  }
  if (has("<start_of_turn>")) return "gemma";
  if (has("<|user|>") && has("<|end|>") && has("<|assistant|>")) return "phi3";
  if (has("<|im_start|>") && has("<think>")) return "qwen3";
  if (has("<|im_start|>")) return "chatml";
  if (has("<|start_header_id|>")) return "llama3";
  if (has("[INST]") && has("<<SYS>>")) return "llama2";
  if (has("[INST]")) return "mistral";
  if (has("### Instruction")) return "alpaca";
  if (has("USER:") && has("ASSISTANT:")) return "vicuna";
  return std::nullopt;
}

// Jinja's trim: surrounding whitespace off.
std::string trimmed(const std::string& s) {
  const char* space = " \t\n\r\f\v";
  const size_t a = s.find_first_not_of(space);
  return a == std::string::npos ? "" : s.substr(a, s.find_last_not_of(space) - a + 1);
}

std::vector<Segment> render_chat(const ChatTemplate& t, const std::string& system, const std::vector<ChatMessage>& messages) {
  std::vector<Segment> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    ChatMessage m = messages[i];
    if (t.trim_content) m.content = trimmed(m.content);
    const char* expected = i % 2 == 0 ? "user" : "assistant";
    if (m.role != expected)
      fail("message {} is from '{}' where '{}' was expected (turns alternate user, assistant, ... after an optional "
           "system prompt)", i + 1, m.role, expected);
    if (m.role == "user") {
      std::string text;
      if (i == 0 && !system.empty())
        text = t.system.empty() ? fill(t.first_user, m.content, system) : fill(t.system, system) + fill(t.user, m.content);
      else
        text = fill(t.user, m.content);
      out.push_back({std::move(text), false, t.bos_every_turn, false});
    } else {
      const bool last = i + 1 == messages.size();
      out.push_back({fill(t.assistant, t.thinking ? qwen3_reply(m.content, last) : m.content), true, false, t.eos_after_reply});
    }
  }
  return out;
}

}  // namespace lora
