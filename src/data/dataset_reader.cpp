#include "data/dataset_reader.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace lora {

namespace fs = std::filesystem;
using nlohmann::json;

const std::vector<std::string>& data_format_names() {
  static const std::vector<std::string> names = {"auto", "alpaca", "sharegpt", "openai", "completions", "text"};
  return names;
}

DataFormat data_format_from_name(const std::string& name) {
  const auto& names = data_format_names();
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return DataFormat(i);
  fail("unknown data format '{}' (valid: {})", name, fmt::join(names, ", "));
}

std::string data_format_name(DataFormat f) { return data_format_names()[size_t(f)]; }

namespace {

// "[json.exception.parse_error.101] parse error at line 1, column 3: ..." -> "parse error at column 3: ..."
std::string json_message(const json::exception& e) {
  std::string m = e.what();
  if (m.rfind("[json.exception.", 0) == 0 && m.find("] ") != std::string::npos) m = m.substr(m.find("] ") + 2);
  return m;
}

const char* type_name(const json& v) { return v.type_name(); }

class RecordReader {
 public:
  RecordReader(const json& record, std::string origin) : r_(record), origin_(std::move(origin)) {}

  [[noreturn]] void error(const std::string& problem) const { throw FormatError(origin_, problem); }

  bool has(const char* key) const { return r_.contains(key) && !r_[key].is_null(); }

  std::string str(const json& v, const std::string& what) const {
    if (v.is_string()) return v.get<std::string>();
    // OpenAI content parts: [{"type": "text", "text": "..."}]
    if (v.is_array()) {
      std::string out;
      for (const json& part : v) {
        if (!part.is_object() || !part.contains("text") || !part["text"].is_string())
          error(fmt::format("{} must be a string or a list of {{\"type\": \"text\", \"text\": ...}} parts", what));
        out += part["text"].get<std::string>();
      }
      return out;
    }
    error(fmt::format("{} must be a string, found {}", what, type_name(v)));
  }

  std::string field(const char* key, const char* format) const {
    if (!has(key)) error(fmt::format("{} record without '{}'", format, key));
    return str(r_[key], fmt::format("'{}'", key));
  }

  std::string optional_field(const char* key) const { return has(key) ? str(r_[key], fmt::format("'{}'", key)) : ""; }

  const json& array(const char* key, const char* format) const {
    if (!has(key)) error(fmt::format("{} record without '{}'", format, key));
    if (!r_[key].is_array()) error(fmt::format("'{}' must be a list, found {}", key, type_name(r_[key])));
    return r_[key];
  }

  // Checks the turns alternate user / assistant and end with a reply.
  void check_turns(const Sample& s) const {
    if (s.messages.empty()) error("the conversation has no user or assistant messages");
    for (size_t i = 0; i < s.messages.size(); ++i) {
      const char* expected = i % 2 == 0 ? "user" : "assistant";
      if (s.messages[i].role != expected)
        error(fmt::format("message {} is from the {} where the {} was expected (turns alternate user, assistant, "
                          "... after an optional system prompt)", i + 1, s.messages[i].role, expected));
    }
    if (s.messages.back().role != "assistant")
      error("the conversation ends with a user message; the last message must be the assistant's reply");
  }

  Sample alpaca() const {
    Sample s;
    s.system = optional_field("system");
    if (has("history")) {
      const json& h = r_["history"];
      if (!h.is_array()) error(fmt::format("'history' must be a list of [instruction, response] pairs, found {}", type_name(h)));
      for (size_t i = 0; i < h.size(); ++i) {
        if (!h[i].is_array() || h[i].size() != 2)
          error(fmt::format("history entry {} must be a pair [instruction, response]", i + 1));
        s.messages.push_back({"user", str(h[i][0], fmt::format("history entry {}", i + 1))});
        s.messages.push_back({"assistant", str(h[i][1], fmt::format("history entry {}", i + 1))});
      }
    }
    std::string user = field("instruction", "an alpaca");
    const std::string input = optional_field("input");
    if (!input.empty()) user += "\n" + input;
    s.messages.push_back({"user", user});
    s.messages.push_back({"assistant", field("output", "an alpaca")});
    return s;
  }

  // sharegpt {"from", "value"} turns and openai {"role", "content"} messages.
  Sample turns(const char* list_key, const char* role_key, const char* text_key, const char* format) const {
    Sample s;
    if (has("system")) s.system = str(r_["system"], "'system'");
    const json& list = array(list_key, format);
    for (size_t i = 0; i < list.size(); ++i) {
      const json& m = list[i];
      // sharegpt files also come with role/content turns
      const char* rk = m.is_object() && !m.contains(role_key) && m.contains("role") ? "role" : role_key;
      const char* tk = m.is_object() && !m.contains(text_key) && m.contains("content") ? "content" : text_key;
      if (!m.is_object() || !m.contains(rk) || !m.contains(tk))
        error(fmt::format("{} entry {} must be an object with '{}' and '{}'", list_key, i + 1, role_key, text_key));
      const std::string role = str(m[rk], fmt::format("{} entry {} '{}'", list_key, i + 1, rk));
      const std::string text = str(m[tk], fmt::format("{} entry {} '{}'", list_key, i + 1, tk));
      if (role == "system") {
        if (i != 0) error(fmt::format("{} entry {}: a system message must come first", list_key, i + 1));
        s.system = text;
      } else if (role == "user" || role == "human") {
        s.messages.push_back({"user", text});
      } else if (role == "assistant" || role == "gpt" || role == "model") {
        s.messages.push_back({"assistant", text});
      } else {
        error(fmt::format("{} entry {} has role '{}' (supported: system, user/human, assistant/gpt)", list_key, i + 1, role));
      }
    }
    return s;
  }

  Sample sample(DataFormat f) const {
    if (!r_.is_object()) error(fmt::format("a record must be a JSON object, found {}", type_name(r_)));
    Sample s;
    switch (f) {
      case DataFormat::Alpaca: s = alpaca(); break;
      case DataFormat::ShareGpt: s = turns("conversations", "from", "value", "a sharegpt"); break;
      case DataFormat::OpenAI: s = turns("messages", "role", "content", "an openai"); break;
      case DataFormat::Completions:
        s.messages = {{"user", field("prompt", "a completions")}, {"assistant", field("completion", "a completions")}};
        break;
      case DataFormat::Text:
        s.is_text = true;
        s.text = field("text", "a text");
        break;
      case DataFormat::Auto: error("internal: format not resolved");
    }
    if (!s.is_text) check_turns(s);
    s.origin = origin_;
    return s;
  }

  DataFormat detect() const {
    if (!r_.is_object()) error(fmt::format("a record must be a JSON object, found {}", type_name(r_)));
    if (has("conversations")) return DataFormat::ShareGpt;
    if (has("messages")) return DataFormat::OpenAI;
    if (has("instruction") && has("output")) return DataFormat::Alpaca;
    if (has("prompt") && has("completion")) return DataFormat::Completions;
    if (has("text")) return DataFormat::Text;
    std::vector<std::string> keys;
    for (auto it = r_.begin(); it != r_.end(); ++it) keys.push_back("'" + it.key() + "'");
    error(fmt::format("a record with none of the known fields (found {}; expected instruction + output (alpaca), "
                      "conversations (sharegpt), messages (openai), prompt + completion (completions) or text)",
                      keys.empty() ? std::string("no fields") : fmt::format("{}", fmt::join(keys, ", "))));
  }

 private:
  const json& r_;
  std::string origin_;
};

int line_of(const std::string& text, size_t byte) {
  byte = std::min(byte, text.size());
  return 1 + int(std::count(text.begin(), text.begin() + std::ptrdiff_t(byte), '\n'));
}

// The line on which each element of a top-level JSON array starts (the text is valid JSON).
std::vector<int> array_element_lines(const std::string& text) {
  std::vector<int> lines;
  int depth = 0, line = 1;
  bool in_string = false, escaped = false, expect = false;
  for (char c : text) {
    if (c == '\n') ++line;
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    if (depth == 1 && expect && c != ']') {
      lines.push_back(line);
      expect = false;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') expect = ++depth == 1;
    else if (c == ']' || c == '}') --depth;
    else if (c == ',' && depth == 1) expect = true;
  }
  return lines;
}

std::string read_all(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail_format(path, "is a folder, not a data file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_format(path, "cannot open: {}", std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail_format(path, "cannot read: {}", std::strerror(errno));
  return ss.str();
}

}  // namespace

DatasetFile read_dataset_file(const std::string& path, DataFormat format) {
  const std::string text = read_all(path);
  DatasetFile out;
  out.path = path;
  out.format = format;
  const std::string ext = fs::path(path).extension().string();
  const size_t first = text.find_first_not_of(" \t\r\n");
  const char lead = first == std::string::npos ? '\0' : text[first];

  auto add = [&](const json& record, int line) {
    const RecordReader r(record, fmt::format("{}:{}", path, line));
    if (out.format == DataFormat::Auto) {
      out.format = r.detect();
    } else if (format == DataFormat::Auto) {
      // a record of another format than the first one: say how the file's format was chosen
      const DataFormat own = r.detect();
      if (own != out.format)
        r.error(fmt::format("this record is in {} format, the first record of the file in {} (one format per file; --format sets it)",
                            data_format_name(own), data_format_name(out.format)));
    }
    out.samples.push_back(r.sample(out.format));
  };

  const bool plain_text = ext == ".txt" || (ext != ".json" && ext != ".jsonl" && lead != '[' && lead != '{');
  if (plain_text) {
    if (format != DataFormat::Auto && format != DataFormat::Text)
      fail_format(path, "a plain text file holds text examples, not {} records", data_format_name(format));
    out.format = DataFormat::Text;
    std::istringstream lines(text);
    int n = 0;
    for (std::string line; std::getline(lines, line);) {
      ++n;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      Sample s;
      s.is_text = true;
      s.text = line;
      s.origin = fmt::format("{}:{}", path, n);
      out.samples.push_back(std::move(s));
    }
  } else if (ext != ".jsonl" && (lead == '[' || (lead == '{' && json::accept(text)))) {
    json doc;
    try {
      doc = json::parse(text);
    } catch (const json::parse_error& e) {
      fail_format(fmt::format("{}:{}", path, line_of(text, e.byte ? e.byte - 1 : 0)), "not valid JSON: {}", json_message(e));
    } catch (const json::exception& e) {  // out_of_range: a number past a double (1e309)
      fail_format(path, "not valid JSON: {}", e.what());
    }
    if (doc.is_object()) {
      add(doc, 1);
    } else {
      const std::vector<int> lines = array_element_lines(text);
      for (size_t i = 0; i < doc.size(); ++i) add(doc[i], i < lines.size() ? lines[i] : 1);
    }
  } else {  // JSON Lines
    std::istringstream lines(text);
    int n = 0;
    for (std::string line; std::getline(lines, line);) {
      ++n;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json record;
      try {
        record = json::parse(line);
      } catch (const json::parse_error& e) {
        fail_format(fmt::format("{}:{}", path, n), "not valid JSON: {}", json_message(e));
      } catch (const json::exception& e) {  // out_of_range: a number past a double (1e309)
        fail_format(fmt::format("{}:{}", path, n), "not valid JSON: {}", e.what());
      }
      add(record, n);
    }
  }
  if (out.samples.empty()) fail_format(path, "empty dataset: the file holds no examples");
  return out;
}

DataPaths resolve_data_paths(const std::vector<std::string>& paths) {
  DataPaths out;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (!fs::is_directory(p, ec)) {
      out.train.push_back(p);
      continue;
    }
    auto find = [&](std::initializer_list<const char*> names) -> std::string {
      for (const char* n : names)
        if (fs::is_regular_file(fs::path(p) / n)) return (fs::path(p) / n).string();
      return "";
    };
    const std::string train = find({"train.jsonl", "train.json"});
    if (train.empty()) fail_format(p, "a data folder must hold train.jsonl or train.json (and optionally valid.jsonl)");
    out.train.push_back(train);
    if (const std::string valid = find({"valid.jsonl", "valid.json", "validation.jsonl", "validation.json"}); !valid.empty())
      out.valid.push_back(valid);
  }
  return out;
}

}  // namespace lora
