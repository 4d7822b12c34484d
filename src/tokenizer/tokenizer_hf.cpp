// Hugging Face tokenizer.json (model type BPE) and the tokenizer_config.json beside it (BOS/EOS/pad
// tokens, add_bos_token / add_eos_token, chat_template).
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/hf_bpe.h"
#include "tokenizer/loaders.h"

namespace lora {

namespace {

using nlohmann::json;

// Normalizers, pre-tokenizers, decoders and post-processors nest as "Sequence"s, and each is read by a recursive
// function (so are dump() and a json value's copy): a file nested deeper than any real tokenizer is refused
// before it is parsed, instead of overflowing the stack.
constexpr int kMaxJsonNesting = 128;

void check_nesting(const char* begin, const char* end, const std::string& path) {
  int depth = 0;
  bool in_string = false;
  for (const char* p = begin; p < end; ++p) {
    if (in_string) {
      if (*p == '\\') ++p;
      else if (*p == '"') in_string = false;
    } else if (*p == '"') {
      in_string = true;
    } else if (*p == '[' || *p == '{') {
      if (++depth > kMaxJsonNesting) fail_format(path, "JSON nested deeper than {} levels", kMaxJsonNesting);
    } else if (*p == ']' || *p == '}') {
      --depth;
    }
  }
}

json parse_json_file(const std::string& path) {
  const auto file = MappedFile::open(path);
  const char* begin = reinterpret_cast<const char*>(file->data());
  check_nesting(begin, begin + file->size(), path);
  try {
    return json::parse(begin, begin + file->size());
  } catch (const json::exception& e) {
    fail_format(path, "invalid JSON: {}", e.what());
  }
}

// "bos_token": "<s>" or {"content": "<s>", ...} (older files); null or missing: none.
std::string token_name(const json& config, const char* key) {
  if (!config.contains(key)) return "";
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

// The special tokens a TemplateProcessing post-processor puts before and after a single sequence.
void template_specials(const json& post, std::string& before, std::string& after) {
  if (!post.is_object()) return;
  const std::string type = post.value("type", "");
  if (type == "Sequence" && post.contains("processors")) {
    for (const json& p : post["processors"]) template_specials(p, before, after);
    return;
  }
  if (type != "TemplateProcessing" || !post.contains("single") || !post["single"].is_array()) return;
  bool seen_sequence = false;
  for (const json& piece : post["single"]) {
    if (piece.contains("Sequence")) seen_sequence = true;
    else if (piece.contains("SpecialToken") && piece["SpecialToken"].contains("id"))
      (seen_sequence ? after : before) = piece["SpecialToken"]["id"].get<std::string>();
  }
}

std::string chat_template_of(const json& config) {
  if (!config.contains("chat_template")) return "";
  const json& t = config["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {
    // A list of {name, template}: the one named "default", else the first.
    for (const json& e : t)
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template")) return e["template"].get<std::string>();
    if (!t.empty() && t[0].is_object() && t[0].contains("template")) return t[0]["template"].get<std::string>();
  }
  return "";
}

void apply_config(HfBpeTokenizer& tok, const json& j, const std::string& config_path) {
  json config = json::object();
  if (std::filesystem::exists(config_path)) {
    config = parse_json_file(config_path);
    if (!config.is_object()) fail_format(config_path, "expected a JSON object");
  }
  std::string before, after;
  template_specials(j.value("post_processor", json()), before, after);
  std::string bos = token_name(config, "bos_token"), eos = token_name(config, "eos_token");
  const std::string pad = token_name(config, "pad_token");
  if (bos.empty()) bos = before;
  auto id_of = [&](const std::string& name) { return name.empty() ? -1 : tok.find_token(name); };
  tok.set_special_ids(id_of(bos), id_of(eos), id_of(pad));
  // add_bos_token when the config says so; else what the post-processor does; else, for files
  // that say neither (some Llama 3 copies), add BOS whenever the tokenizer has one, as llama.cpp does.
  bool add_bos = !before.empty() || (before.empty() && after.empty() && !bos.empty());
  bool add_eos = !after.empty();
  if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) add_bos = config["add_bos_token"].get<bool>();
  if (config.contains("add_eos_token") && config["add_eos_token"].is_boolean()) add_eos = config["add_eos_token"].get<bool>();
  tok.set_add_special(add_bos && tok.bos_id() >= 0, add_eos && tok.eos_id() >= 0);
  tok.set_chat_template(chat_template_of(config));
}

std::unique_ptr<HfBpeTokenizer> build(const json& j, const std::string& path) {
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    fail_format(path, "not a Hugging Face tokenizer.json: no \"model\" object");
  const json& m = j["model"];
  const std::string type = m.value("type", m.contains("merges") ? "BPE" : "");
  if (type != "BPE")
    fail_format(path, "tokenizer model type '{}' is not supported (only BPE)", type.empty() ? "(missing)" : type);
  if (!m.contains("vocab") || !m["vocab"].is_object()) fail_format(path, "BPE model has no \"vocab\" object");
  if (!m.contains("merges") || !m["merges"].is_array()) fail_format(path, "BPE model has no \"merges\" list");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(key) && m[key].is_string() && !m[key].get<std::string>().empty())
      fail_format(path, "BPE {} '{}' is not supported", key, m[key].get<std::string>());
  if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0)
    fail_format(path, "BPE dropout is a training-time option and is not supported");

  std::vector<std::string> vocab;
  for (const auto& [text, id_json] : m["vocab"].items()) {
    if (!id_json.is_number_integer()) fail_format(path, "vocab entry '{}' has a non-integer id", text);
    const int64_t id = id_json.get<int64_t>();
    if (id < 0 || id >= (int64_t(1) << 24)) fail_format(path, "vocab entry '{}' has id {} out of range", text, id);
    if (size_t(id) >= vocab.size()) vocab.resize(size_t(id) + 1);
    vocab[size_t(id)] = text;
  }

  HfBpeTokenizer::Pipeline pipeline;
  for (auto [key, field] : {std::pair{"normalizer", &pipeline.normalizer}, {"pre_tokenizer", &pipeline.pre_tokenizer},
                            {"post_processor", &pipeline.post_processor}, {"decoder", &pipeline.decoder}})
    if (j.contains(key)) *field = j[key];
  HfBpeTokenizer::ModelOptions options;
  if (m.contains("unk_token") && m["unk_token"].is_string()) options.unk_token = m["unk_token"].get<std::string>();
  options.ignore_merges = m.value("ignore_merges", false);
  options.byte_fallback = m.value("byte_fallback", false);
  options.fuse_unk = m.value("fuse_unk", false);
  const bool byte_level = j.contains("pre_tokenizer") && j["pre_tokenizer"].dump().find("\"ByteLevel\"") != std::string::npos;
  auto tok = std::make_unique<HfBpeTokenizer>(byte_level ? "hf-bpe" : "hf-spm-bpe", std::move(pipeline), options, std::move(vocab), path);

  const json& merges = m["merges"];
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& e = merges[i];
    if (e.is_string()) {
      // "left right": the older spelling; tokens never contain a space in these vocabularies.
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) fail_format(path, "merge {} '{}' is not two tokens separated by a space", i, s);
      tok->add_merge(std::string_view(s).substr(0, sp), std::string_view(s).substr(sp + 1), i);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      tok->add_merge(e[0].get_ref<const std::string&>(), e[1].get_ref<const std::string&>(), i);
    } else {
      fail_format(path, "merge {} is neither \"a b\" nor [\"a\", \"b\"]: {}", i, e.dump().substr(0, 80));
    }
  }

  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const json& t : j["added_tokens"]) {
      if (!t.is_object() || !t.contains("id") || !t.contains("content") || !t["id"].is_number_integer() || !t["content"].is_string())
        fail_format(path, "added token {} needs an integer id and a string content", t.dump().substr(0, 80));
      AddedToken a;
      a.id = t["id"].get<int32_t>();
      a.content = t["content"].get<std::string>();
      a.special = t.value("special", false);
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      a.single_word = t.value("single_word", false);
      a.normalized = t.value("normalized", false);
      if (a.id >= (1 << 24)) fail_format(path, "added token '{}' has id {} out of range", a.content, a.id);
      tok->add_token(std::move(a));
    }
  }
  tok->finish();
  return tok;
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& path) {
  const json j = parse_json_file(path);
  std::unique_ptr<HfBpeTokenizer> tok;
  try {
    tok = build(j, path);
    const std::string config_path = (std::filesystem::path(path).parent_path() / "tokenizer_config.json").string();
    apply_config(*tok, j, config_path);
  } catch (const FormatError&) {
    throw;
  } catch (const json::exception& e) {
    fail_format(path, "unexpected JSON structure: {}", e.what());
  } catch (const Error& e) {
    fail_format(path, "{}", e.what());
  }
  return tok;
}

}  // namespace lora
