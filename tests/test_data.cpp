// The data pipeline: dataset formats and their errors, chat templates, response-only labels,
// truncation, packing, validation splits.
#include <gtest/gtest.h>

#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/chat_template.h"
#include "data/dataset.h"
#include "data/dataset_reader.h"
#include "data/encode.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace lora {
namespace {

using test::TempDir;
using test::write_text;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(DataReader, ReadsEveryFormat) {
  TempDir tmp;
  write_text(tmp / "alpaca.jsonl",
             R"({"instruction": "Add", "input": "2 and 3", "output": "5", "system": "Be brief.", "history": [["Hi", "Hello"]]})"
             "\n\n"
             R"({"instruction": "Say hi", "output": "hi"})"
             "\n");
  write_text(tmp / "sharegpt.json", R"([
  {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"},
                     {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}]}
])");
  write_text(tmp / "openai.jsonl",
             R"({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "Q"}]}, {"role": "assistant", "content": "A"}]})"
             "\n");
  write_text(tmp / "completions.jsonl", R"({"prompt": "P", "completion": "C"})" "\n");
  write_text(tmp / "text.jsonl", R"({"text": "plain words"})" "\n");
  write_text(tmp / "lines.txt", "first story\n\nsecond story\n");

  const DatasetFile a = read_dataset_file(tmp / "alpaca.jsonl");
  EXPECT_EQ(a.format, DataFormat::Alpaca);
  ASSERT_EQ(a.samples.size(), 2u);
  EXPECT_EQ(a.samples[0].system, "Be brief.");
  ASSERT_EQ(a.samples[0].messages.size(), 4u);
  EXPECT_EQ(a.samples[0].messages[0].content, "Hi");
  EXPECT_EQ(a.samples[0].messages[2].content, "Add\n2 and 3");  // instruction + "\n" + input, as LLaMA-Factory joins them
  EXPECT_EQ(a.samples[0].messages[3].content, "5");
  EXPECT_EQ(a.samples[1].origin, tmp / "alpaca.jsonl:3");  // the blank line counts

  const DatasetFile s = read_dataset_file(tmp / "sharegpt.json");
  EXPECT_EQ(s.format, DataFormat::ShareGpt);
  EXPECT_EQ(s.samples[0].system, "S");
  ASSERT_EQ(s.samples[0].messages.size(), 4u);
  EXPECT_EQ(s.samples[0].messages[3].role, "assistant");
  EXPECT_EQ(s.samples[0].origin, tmp / "sharegpt.json:2");  // the line the record starts on

  const DatasetFile o = read_dataset_file(tmp / "openai.jsonl");
  EXPECT_EQ(o.format, DataFormat::OpenAI);
  EXPECT_EQ(o.samples[0].messages[0].content, "Q");

  const DatasetFile c = read_dataset_file(tmp / "completions.jsonl");
  EXPECT_EQ(c.format, DataFormat::Completions);
  EXPECT_EQ(c.samples[0].messages[1].content, "C");

  const DatasetFile t = read_dataset_file(tmp / "text.jsonl");
  EXPECT_EQ(t.format, DataFormat::Text);
  EXPECT_TRUE(t.samples[0].is_text);
  EXPECT_EQ(t.samples[0].text, "plain words");

  const DatasetFile l = read_dataset_file(tmp / "lines.txt");
  ASSERT_EQ(l.samples.size(), 2u);
  EXPECT_EQ(l.samples[1].text, "second story");
  EXPECT_EQ(l.samples[1].origin, tmp / "lines.txt:3");

  // an explicit format wins over detection: a record with "text" and "prompt"/"completion"
  write_text(tmp / "both.jsonl", R"({"prompt": "P", "completion": "C", "text": "T"})" "\n");
  EXPECT_EQ(read_dataset_file(tmp / "both.jsonl").format, DataFormat::Completions);
  EXPECT_EQ(read_dataset_file(tmp / "both.jsonl", DataFormat::Text).samples[0].text, "T");
}

TEST(DataReader, ErrorsNameFileAndLine) {
  TempDir tmp;
  auto err = [&](const std::string& name, const std::string& content, DataFormat f = DataFormat::Auto) {
    write_text(tmp / name, content);
    return error_of([&] { read_dataset_file(tmp / name, f); });
  };
  std::string e = err("bad.jsonl", R"({"text": "ok"})" "\n" R"({"text": "unterminated)" "\n");
  EXPECT_TRUE(contains(e, tmp / "bad.jsonl:2: not valid JSON")) << e;

  e = err("unknown.jsonl", R"({"question": "Q", "answer": "A"})" "\n");
  EXPECT_TRUE(contains(e, tmp / "unknown.jsonl:1: a record with none of the known fields (found 'answer', 'question'")) << e;
  EXPECT_TRUE(contains(e, "instruction + output (alpaca)")) << e;

  e = err("empty.jsonl", "\n  \n");
  EXPECT_TRUE(contains(e, tmp / "empty.jsonl: empty dataset")) << e;
  e = err("empty.json", "[]");
  EXPECT_TRUE(contains(e, "empty dataset")) << e;

  e = err("missing.jsonl", R"({"instruction": "Q", "output": "A"})" "\n" R"({"instruction": "Q"})" "\n", DataFormat::Alpaca);
  EXPECT_TRUE(contains(e, tmp / "missing.jsonl:2: an alpaca record without 'output'")) << e;

  e = err("type.jsonl", R"({"instruction": "Q", "output": 5})" "\n");
  EXPECT_TRUE(contains(e, tmp / "type.jsonl:1: 'output' must be a string, found number")) << e;

  e = err("order.jsonl", R"({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})" "\n");
  EXPECT_TRUE(contains(e, tmp / "order.jsonl:1: message 2 is from the user where the assistant was expected")) << e;

  e = err("last.jsonl", R"({"messages": [{"role": "user", "content": "a"}]})" "\n");
  EXPECT_TRUE(contains(e, "ends with a user message")) << e;

  e = err("role.jsonl", R"({"messages": [{"role": "tool", "content": "a"}]})" "\n");
  EXPECT_TRUE(contains(e, "has role 'tool'")) << e;

  e = err("mixed.jsonl", R"({"text": "a"})" "\n" R"({"prompt": "P", "completion": "C"})" "\n");
  EXPECT_TRUE(contains(e, tmp / "mixed.jsonl:2: this record is in completions format, the first record of the file in text")) << e;

  e = err("array.json", "[\n  {\"text\": \"a\"},\n  {\"nothing\": 1}\n]\n");
  EXPECT_TRUE(contains(e, tmp / "array.json:3: a record with none of the known fields")) << e;

  e = err("broken.json", "[\n  {\"text\": \"a\"},\n  {\"text\": }\n]\n");
  EXPECT_TRUE(contains(e, tmp / "broken.json:3: not valid JSON")) << e;

  e = err("notobject.jsonl", "[1, 2]\n");
  EXPECT_TRUE(contains(e, "a record must be a JSON object, found array")) << e;

  e = error_of([&] { read_dataset_file(tmp / "does-not-exist.jsonl"); });
  EXPECT_TRUE(contains(e, "does-not-exist.jsonl: cannot open")) << e;

  e = err("words.txt", "some text\n", DataFormat::Alpaca);
  EXPECT_TRUE(contains(e, "a plain text file holds text examples")) << e;

  // every message is one line
  for (const std::string& m : {err("bad.jsonl", "{\n"), err("unknown.jsonl", "{\"a\": 1}\n")}) EXPECT_EQ(m.find('\n'), std::string::npos) << m;
}

TEST(DataReader, DataFolders) {
  TempDir tmp;
  std::filesystem::create_directories(tmp / "d");
  write_text(tmp / "d/train.jsonl", R"({"text": "a"})" "\n");
  write_text(tmp / "d/valid.jsonl", R"({"text": "b"})" "\n");
  const DataPaths p = resolve_data_paths({tmp / "d", tmp / "other.jsonl"});
  EXPECT_EQ(p.train, (std::vector<std::string>{tmp / "d/train.jsonl", tmp / "other.jsonl"}));
  EXPECT_EQ(p.valid, (std::vector<std::string>{tmp / "d/valid.jsonl"}));
  std::filesystem::create_directories(tmp / "e");
  EXPECT_TRUE(contains(error_of([&] { resolve_data_paths({tmp / "e"}); }), "must hold train.jsonl")) << tmp.path();
}

std::string rendered(const std::string& name, bool with_system = true) {
  std::string out;
  const std::vector<ChatMessage> turns = {{"user", "Q1"}, {"assistant", "A1"}, {"user", "Q2"}, {"assistant", "A2"}};
  for (const Segment& s : render_chat(chat_template(name), with_system ? "SYS" : "", turns))
    out += std::string(s.bos ? "<s>" : "") + (s.response ? "[" + s.text + "]" : s.text) + (s.eos ? "</s>" : "");
  return out;
}

TEST(ChatTemplate, RendersEachNamedTemplate) {
  // [...] marks response segments (trained on by default)
  EXPECT_EQ(rendered("chatml"),
            "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n[A1<|im_end|>\n]"
            "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n[A2<|im_end|>\n]");
  EXPECT_EQ(rendered("llama3"),
            "<|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ1"
            "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n[A1<|eot_id|>]<|start_header_id|>user"
            "<|end_header_id|>\n\nQ2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n[A2<|eot_id|>]");
  EXPECT_EQ(rendered("llama2"), "<s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nQ1 [/INST][A1]</s><s>[INST] Q2 [/INST][A2]</s>");
  EXPECT_EQ(rendered("mistral"), "[INST] SYS\n\nQ1 [/INST][A1]</s>[INST] Q2 [/INST][A2]</s>");
  EXPECT_EQ(rendered("alpaca"), "SYS\n\n### Instruction:\nQ1\n\n### Response:\n[A1]</s>### Instruction:\nQ2\n\n### Response:\n[A2]</s>");
  EXPECT_EQ(rendered("vicuna"), "SYS USER: Q1 ASSISTANT:[A1]</s>USER: Q2 ASSISTANT:[A2]</s>");
  EXPECT_EQ(rendered("plain"), "SYS\nQ1\n[A1]</s>Q2\n[A2]</s>");
  EXPECT_EQ(rendered("llama2", false), "<s>[INST] Q1 [/INST][A1]</s><s>[INST] Q2 [/INST][A2]</s>");
  // Qwen3: the last reply carries a thinking block (empty when it brings none), earlier replies lose theirs,
  // as Qwen3's own chat_template renders them
  EXPECT_EQ(rendered("qwen3", false),
            "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n[A1<|im_end|>\n]"
            "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n[<think>\n\n</think>\n\nA2<|im_end|>\n]");
  const auto thought = render_chat(chat_template("qwen3"), "",
                                   {{"user", "Q1"}, {"assistant", "<think>\nhmm\n</think>\n\nA1"}, {"user", "Q2"},
                                    {"assistant", "<think>\nso 4\n\n</think>\n\n4"}});
  ASSERT_EQ(thought.size(), 4u);
  EXPECT_EQ(thought[1].text, "A1<|im_end|>\n");
  EXPECT_EQ(thought[3].text, "<think>\nso 4\n</think>\n\n4<|im_end|>\n");
  // Gemma: the system prompt opens the first user turn, replies are "model" turns
  EXPECT_EQ(rendered("gemma"),
            "<start_of_turn>user\nSYS\n\nQ1<end_of_turn>\n<start_of_turn>model\n[A1<end_of_turn>\n]"
            "<start_of_turn>user\nQ2<end_of_turn>\n<start_of_turn>model\n[A2<end_of_turn>\n]");
  // Phi-3: <|system|>, <|user|> and <|assistant|> turns, each closed by <|end|>
  EXPECT_EQ(rendered("phi3"),
            "<|system|>\nSYS<|end|>\n<|user|>\nQ1<|end|>\n<|assistant|>\n[A1<|end|>\n]<|user|>\nQ2<|end|>\n<|assistant|>\n"
            "[A2<|end|>\n]");
  // the generation prompt ends with the assistant header
  const auto prompt = render_chat(chat_template("chatml"), "", {{"user", "hi"}});
  ASSERT_EQ(prompt.size(), 1u);
  EXPECT_EQ(prompt[0].text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  // a "{content}" inside a message is text, not a placeholder
  EXPECT_EQ(render_chat(chat_template("plain"), "{content}", {{"user", "{system}"}})[0].text, "{content}\n{system}\n");
}

TEST(ChatTemplate, NamesAndDetection) {
  EXPECT_EQ(chat_template_names(),
            (std::vector<std::string>{"chatml", "qwen3", "gemma", "phi3", "llama3", "llama2", "mistral", "alpaca", "vicuna",
                                      "plain"}));
  const std::string e = error_of([] { chat_template("zephyr"); });
  EXPECT_EQ(e, "unknown chat template 'zephyr' (valid: chatml, qwen3, gemma, phi3, llama3, llama2, mistral, alpaca, vicuna, "
               "plain)");
  // Phi-3.5-mini-instruct's own template (its markers)
  EXPECT_EQ(detect_chat_template("{% for message in messages %}{% if message['role'] == 'user' %}{{'<|user|>\n' + "
                                 "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>"
                                 "\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"),
            "phi3");
  // the templates the real tokenizers record
  EXPECT_EQ(detect_chat_template(load_tokenizer(test::asset("tokenizers/llama3/tokenizer.json"))->chat_template()), "llama3");
  // (Qwen3's own template: chatml with thinking blocks)
  EXPECT_EQ(detect_chat_template(load_tokenizer(test::asset("tokenizers/qwen3/tokenizer.json"))->chat_template()), "qwen3");
  EXPECT_EQ(detect_chat_template(load_tokenizer(test::asset("tokenizers/gemma3/tokenizer.json"))->chat_template()), "gemma");
  EXPECT_EQ(detect_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}{% endfor %}"), "chatml");
  EXPECT_EQ(detect_chat_template("{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"), "mistral");
  EXPECT_EQ(detect_chat_template("{% if x %}<<SYS>>{% endif %}[INST]"), "llama2");
  EXPECT_EQ(detect_chat_template("{{ 'something else' }}"), std::nullopt);
  // every template's own Jinja text is recognised as itself (what lora init writes)
  for (const std::string& n : chat_template_names()) EXPECT_EQ(detect_chat_template(chat_template(n).jinja), n);
}

// (Debian's python3 carries torch for the model oracles; jinja2 may be in another python3 on the PATH) "" when none has it.
std::string python_with_jinja2() {
  for (const std::string& p : {test::python(), std::string("python3")})
    if (test::run(p + " -c 'import jinja2'").exit_code == 0) return p;
  return "";
}

// Gemma 3's own chat_template (tokenizer_config.json), rendered by jinja2, against the gemma template's segments
// (with BOS, which the Gemma tokenizer adds, in front): conversations with and without a system prompt, contents with
// surrounding whitespace, and the generation prompt. Our own Jinja text renders the same.
TEST(ChatTemplate, GemmaRendersAsGemma3sOwnJinja) {
  const std::string python = python_with_jinja2();
  if (python.empty()) GTEST_SKIP() << "no python3 with jinja2";
  TempDir tmp;
  const std::string own = test::asset("tokenizers/gemma3/tokenizer_config.json");
  write_text(tmp / "ours.json", nlohmann::json{{"bos_token", "<bos>"}, {"chat_template", chat_template("gemma").jinja}}.dump());
  const std::vector<std::pair<std::string, std::vector<ChatMessage>>> cases = {
      {"", {{"user", "Hi there"}, {"assistant", "Hello! How can I help?"}, {"user", "2+2?"}, {"assistant", "4"}}},
      {"You are terse.", {{"user", "  Name a color.\n"}, {"assistant", "\nBlue. "}}},
      {"Be kind.", {{"user", "Tell me a joke"}}},
  };
  for (const auto& [system, turns] : cases) {
    std::string ours = "<bos>";
    for (const Segment& s : render_chat(chat_template("gemma"), system, turns)) ours += s.text;
    nlohmann::json messages = nlohmann::json::array();
    if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
    for (const ChatMessage& m : turns) messages.push_back({{"role", m.role}, {"content", m.content}});
    write_text(tmp / "m.json", messages.dump());
    const std::string prompt = turns.back().role == "user" ? " --generation-prompt" : "";
    for (const std::string& config : {own, std::string(tmp / "ours.json")}) {
      const auto r = test::run(python + " " + LORA_PYTHON_DIR + "/render_chat_template.py --config '" + config +
                               "' --messages " + (tmp / "m.json") + prompt);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(ours, r.out) << config;
    }
  }
  // the Gemma tokenizer starts a sequence with <bos> and has the turn markers as single tokens
  const auto tok = load_tokenizer(test::asset("tokenizers/gemma3/tokenizer.json"));
  EXPECT_EQ(tok->encode("<start_of_turn>").size(), 1u);
  EXPECT_EQ(tok->encode("<end_of_turn>").size(), 1u);
}

// The phi3 template's Jinja text (what lora init records in tokenizer_config.json), rendered by jinja2, is the
// conversation its segments make: with and without a system prompt (an empty one left out), and the generation prompt.
TEST(ChatTemplate, Phi3JinjaRendersAsItsSegments) {
  const std::string python = python_with_jinja2();
  if (python.empty()) GTEST_SKIP() << "no python3 with jinja2";
  TempDir tmp;
  write_text(tmp / "ours.json", nlohmann::json{{"chat_template", chat_template("phi3").jinja}}.dump());
  const std::vector<std::pair<std::string, std::vector<ChatMessage>>> cases = {
      {"", {{"user", "Hi there"}, {"assistant", "Hello! How can I help?"}, {"user", "2+2?"}, {"assistant", "4"}}},
      {"You are terse.", {{"user", "Name a color."}, {"assistant", "Blue."}}},
      {"Be kind.", {{"user", "Tell me a joke"}}},
  };
  for (const auto& [system, turns] : cases) {
    std::string ours;
    for (const Segment& s : render_chat(chat_template("phi3"), system, turns)) ours += s.text;
    nlohmann::json messages = nlohmann::json::array();
    messages.push_back({{"role", "system"}, {"content", system}});  // (empty: left out, as Phi-3.5's template does)
    for (const ChatMessage& m : turns) messages.push_back({{"role", m.role}, {"content", m.content}});
    write_text(tmp / "m.json", messages.dump());
    const std::string prompt = turns.back().role == "user" ? " --generation-prompt" : "";
    const auto r = test::run(python + " " + LORA_PYTHON_DIR + "/render_chat_template.py --config '" + (tmp / "ours.json") +
                             "' --messages " + (tmp / "m.json") + prompt);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(ours, r.out);
  }
}

TEST(Encode, ResponseOnlyLabelsAndTrainOnPrompt) {
  const auto tok = load_tokenizer(test::asset("tokenizers/qwen3/tokenizer.json"));
  Sample s;
  s.system = "Be brief.";
  s.messages = {{"user", "What is 2+3?"}, {"assistant", "5"}, {"user", "And 2+4?"}, {"assistant", "6"}};
  const ChatTemplate& t = chat_template("chatml");
  const TrainExample e = encode_sample(*tok, t, s, false);
  ASSERT_EQ(e.input_ids.size(), e.labels.size());
  // the special markers are single tokens, and the trained tokens are exactly the two replies with their end marker
  std::vector<int32_t> trained;
  for (size_t i = 0; i < e.labels.size(); ++i)
    if (e.labels[i] != kIgnoreIndex) {
      EXPECT_EQ(e.labels[i], e.input_ids[i]);
      trained.push_back(e.input_ids[i]);
    }
  EXPECT_EQ(tok->decode(trained), "5<|im_end|>\n6<|im_end|>\n");
  EXPECT_EQ(tok->decode(e.input_ids),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n5"
            "<|im_end|>\n<|im_start|>user\nAnd 2+4?<|im_end|>\n<|im_start|>assistant\n6<|im_end|>\n");
  EXPECT_EQ(std::count(e.input_ids.begin(), e.input_ids.end(), tok->encode("<|im_start|>").at(0)), 5);

  const TrainExample all = encode_sample(*tok, t, s, true);
  EXPECT_EQ(all.input_ids, e.input_ids);
  EXPECT_EQ(all.labels, all.input_ids);

  // What chat feeds the model to get the first reply is exactly the start of the training sequence.
  const std::vector<int32_t> prompt = encode_segments(*tok, render_chat(t, s.system, {s.messages[0]}));
  ASSERT_LT(prompt.size(), e.input_ids.size());
  EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), e.input_ids.begin()));
  EXPECT_EQ(e.labels[prompt.size() - 1], kIgnoreIndex);
  EXPECT_NE(e.labels[prompt.size()], kIgnoreIndex);
}

TEST(Encode, BosEosTextAndSentencePieceTokenizers) {
  const auto tok = load_tokenizer(test::stories_tokenizer());  // llama2.c: BOS 1 added, EOS 2
  Sample text;
  text.is_text = true;
  text.text = "Once upon a time";
  const TrainExample t = encode_sample(*tok, chat_template("alpaca"), text, false);
  EXPECT_EQ(t.input_ids.front(), 1);
  EXPECT_EQ(t.input_ids.back(), 2);
  for (size_t i = 1; i < t.labels.size(); ++i) EXPECT_EQ(t.labels[i], t.input_ids[i]);  // plain text trains on everything
  EXPECT_EQ(tok->decode(t.input_ids, true), "Once upon a time");

  Sample chat;
  chat.messages = {{"user", "Hi"}, {"assistant", "Hello"}};
  const TrainExample c = encode_sample(*tok, chat_template("llama2"), chat, false);
  // llama2: one BOS (the template's, not a second one from the tokenizer), EOS after the reply, trained
  EXPECT_EQ(std::count(c.input_ids.begin(), c.input_ids.end(), 1), 1);
  EXPECT_EQ(c.input_ids.front(), 1);
  EXPECT_EQ(c.input_ids.back(), 2);
  EXPECT_EQ(c.labels.back(), 2);
  std::vector<int32_t> reply;
  for (size_t i = 0; i < c.labels.size(); ++i)
    if (c.labels[i] != kIgnoreIndex && c.labels[i] != 2) reply.push_back(c.labels[i]);
  EXPECT_EQ(tok->decode(reply), "Hello");
}

TEST(Encode, TruncationDroppingAndPacking) {
  const auto tok = load_tokenizer(test::stories_tokenizer());
  const ChatTemplate& t = chat_template("alpaca");
  std::vector<Sample> samples(3);
  samples[0].messages = {{"user", "A short question?"}, {"assistant", "A short answer."}};
  samples[1].messages = {{"user", std::string(200, 'x')}, {"assistant", "lost"}};
  samples[2].messages = {{"user", "Q"}, {"assistant", "An answer that goes on and on and on and on and on."}};
  for (size_t i = 0; i < samples.size(); ++i) samples[i].origin = "mem:" + std::to_string(i + 1);
  // where each reply starts, untruncated
  auto first_trained = [&](const Sample& x) {
    const TrainExample e = encode_sample(*tok, t, x, false);
    size_t i = 1;
    while (e.labels[i] == kIgnoreIndex) ++i;
    return std::make_pair(int64_t(i), int64_t(e.input_ids.size()));
  };
  const int64_t max_len = first_trained(samples[2]).first + 5;
  ASSERT_GT(first_trained(samples[1]).first, max_len);
  size_t kept = 0, truncated = 0;
  for (const Sample& x : samples) kept += first_trained(x).first < max_len, truncated += first_trained(x).second > max_len;

  EncodeStats st;
  const auto out = encode_samples(*tok, t, samples, max_len, false, &st);
  EXPECT_EQ(out.size(), kept);  // the 200-character prompt leaves no reply within max_len tokens
  EXPECT_GE(out.size(), 1u);
  EXPECT_EQ(st.dropped, int64_t(samples.size() - kept));
  EXPECT_EQ(st.truncated, int64_t(truncated));
  for (const TrainExample& e : out) {
    EXPECT_LE(int64_t(e.input_ids.size()), max_len);
    EXPECT_GT(trained_token_count(e), 0);
  }

  // nothing left anywhere: a clear error
  const std::string e = error_of([&] { encode_samples(*tok, t, {samples[1]}, max_len, false); });
  EXPECT_TRUE(contains(e, fmt::format("nothing to train on: max_seq_len {} cuts away every response token", max_len))) << e;
  // ... unless the prompt is trained on too
  EXPECT_EQ(encode_samples(*tok, t, {samples[1]}, max_len, true).size(), 1u);

  // packing: first-fit by decreasing length, labels kept, no example split, nothing predicted across examples
  std::vector<TrainExample> ex;
  for (int n : {30, 12, 25, 8, 20}) {
    TrainExample x;
    for (int i = 0; i < n; ++i) x.input_ids.push_back(100 + n), x.labels.push_back(i >= 1 && i < 3 ? kIgnoreIndex : 100 + n);  // labels[0] set: packing must clear it
    ex.push_back(x);
  }
  const auto packed = pack_examples(ex, 40);
  ASSERT_EQ(packed.size(), 3u);  // 30+8, 25+12, 20
  int64_t targets_before = 0, targets_after = 0, tokens = 0;
  for (const auto& x : ex) targets_before += trained_token_count(x);
  for (const auto& p : packed) {
    EXPECT_LE(p.input_ids.size(), 40u);
    targets_after += trained_token_count(p);
    tokens += int64_t(p.input_ids.size());
    for (size_t i = 1; i < p.input_ids.size(); ++i)
      if (p.input_ids[i] != p.input_ids[i - 1]) {
        EXPECT_EQ(p.labels[i], kIgnoreIndex) << "an example boundary is never a target";
      }
  }
  EXPECT_EQ(tokens, 95);
  EXPECT_EQ(targets_after, targets_before);
}

TEST(Dataset, MixesFilesAndSplitsValidation) {
  TempDir tmp;
  std::string a, b;
  for (int i = 0; i < 30; ++i) a += R"({"instruction": "Q)" + std::to_string(i) + R"(", "output": "A"})" "\n";
  for (int i = 0; i < 10; ++i) b += R"({"text": "story )" + std::to_string(i) + R"("})" "\n";
  write_text(tmp / "a.jsonl", a);
  write_text(tmp / "b.jsonl", b);
  const auto tok = load_tokenizer(test::stories_tokenizer());
  DatasetOptions o;
  o.data = {tmp / "a.jsonl", tmp / "b.jsonl"};
  o.max_seq_len = 64;
  o.val_size = 0.1;
  const Dataset d = build_dataset(o, *tok, chat_template("alpaca"));
  EXPECT_EQ(d.train.size(), 36u);
  EXPECT_EQ(d.eval.size(), 4u);
  o.val_size = 5;
  EXPECT_EQ(build_dataset(o, *tok, chat_template("alpaca")).eval.size(), 5u);
  o.val_size = 40;
  EXPECT_TRUE(contains(error_of([&] { build_dataset(o, *tok, chat_template("alpaca")); }), "choose a smaller --val-size"));
  o.val_size = 0;
  o.max_samples = 4;
  EXPECT_EQ(build_dataset(o, *tok, chat_template("alpaca")).train.size(), 8u);
  o.max_samples = 0;
  o.val_data = {tmp / "b.jsonl"};
  o.packing = true;
  const Dataset p = build_dataset(o, *tok, chat_template("alpaca"));
  EXPECT_EQ(p.eval.size(), 10u);
  EXPECT_LT(p.train.size(), 40u);  // packed
  int64_t targets = 0;
  for (const auto& e : p.train) targets += trained_token_count(e);
  EXPECT_EQ(targets, p.train_targets);
}

}  // namespace
}  // namespace lora
