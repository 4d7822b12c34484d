#include "tokenizer/hf_bpe.h"

#include "core/error.h"
#include "tokenizer/byte_level.h"

namespace lora {

namespace {

int parse_byte_piece(std::string_view p) {
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>' || hex(p[3]) < 0 || hex(p[4]) < 0) return -1;
  return hex(p[3]) * 16 + hex(p[4]);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  for (size_t i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size())) s.replace(i, from.size(), to);
  return s;
}

}  // namespace

HfBpeTokenizer::HfBpeTokenizer(std::string kind, Pipeline pipeline, ModelOptions options, std::vector<std::string> vocab,
                               const std::string& path)
    : path_(path), pipeline_(std::move(pipeline)), options_(std::move(options)) {
  kind_ = std::move(kind);
  normalizer_ = Normalizer::from_hf_json(pipeline_.normalizer, path);
  pre_tokenizer_ = PreTokenizer::from_hf_json(pipeline_.pre_tokenizer, path);
  n_model_tokens_ = int32_t(vocab.size());
  pieces_ = std::move(vocab);
  model_keys_.resize(pieces_.size());
  in_model_vocab_.assign(pieces_.size(), 0);
  model_.reserve(pieces_.size());
  const bool byte_level = pre_tokenizer_.byte_level();
  for (size_t i = 0; i < pieces_.size(); ++i) {
    if (pieces_[i].empty()) continue;
    in_model_vocab_[i] = 1;
    if (byte_level) {
      // A string outside the byte alphabet can never come out of the ByteLevel pre-tokenizer, so
      // the model never produces it; leaving it out of the table is exactly equivalent.
      if (!byte_level::decode(pieces_[i], model_keys_[i])) continue;
    } else {
      model_keys_[i] = pieces_[i];
    }
  }
  for (size_t i = 0; i < pieces_.size(); ++i)
    if (!model_keys_[i].empty()) model_.add_token(model_keys_[i], int32_t(i));

  BpeModel::Options o;
  o.byte_symbols = byte_level;
  o.ignore_merges = options_.ignore_merges;
  o.byte_fallback = options_.byte_fallback;
  o.fuse_unk = options_.fuse_unk;
  if (!options_.unk_token.empty()) {
    o.unk_id = model_id(options_.unk_token);
    if (o.unk_id < 0) fail_format(path, "unk_token '{}' is not in the vocabulary", options_.unk_token);
  }
  model_.set_options(o);
  model_.resolve_byte_tokens();
}

int32_t HfBpeTokenizer::model_id(std::string_view vocab_string) const {
  if (!pre_tokenizer_.byte_level()) return model_.token_id(vocab_string);
  std::string key;
  if (!byte_level::decode(vocab_string, key)) return -1;
  return model_.token_id(key);
}

void HfBpeTokenizer::add_merge(std::string_view left, std::string_view right, size_t index) {
  const int32_t l = model_id(left), r = model_id(right);
  if (l < 0 || r < 0)
    fail_format(path_, "merge {} '{} {}' refers to token '{}', which is not in the vocabulary", index, left, right,
                l < 0 ? left : right);
  const std::string joined = model_keys_[size_t(l)] + model_keys_[size_t(r)];
  const int32_t merged = model_.token_id(joined);
  if (merged < 0) fail_format(path_, "merge {} '{} {}' makes '{}{}', which is not in the vocabulary", index, left, right, left, right);
  model_.add_merge(l, r, merged);
  merges_.emplace_back(l, r);
}

void HfBpeTokenizer::add_token(AddedToken token) {
  if (token.id < 0) fail_format(path_, "added token '{}' has a negative id", token.content);
  if (size_t(token.id) >= pieces_.size()) pieces_.resize(size_t(token.id) + 1);
  pieces_[size_t(token.id)] = token.content;
  added_.add(std::move(token));
}

void HfBpeTokenizer::configure_decoder(const nlohmann::json& j) {
  if (j.is_null()) return;
  const std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const nlohmann::json& d : j.at("decoders")) configure_decoder(d);
  } else if (type == "ByteLevel") {
    decode_byte_level_ = true;
  } else if (type == "ByteFallback") {
    decode_byte_fallback_ = true;
  } else if (type == "Fuse") {
  } else if (type == "Replace") {
    const nlohmann::json& p = j.at("pattern");
    if (!p.contains("String")) fail_format(path_, "decoder Replace with a regex pattern is not supported");
    decode_replace_.emplace_back(p["String"].get<std::string>(), j.at("content").get<std::string>());
  } else if (type == "Strip") {
    const std::string content = j.value("content", " ");
    const int start = j.value("start", 0), stop = j.value("stop", 0);
    if (content != " " || start > 1 || stop != 0)
      fail_format(path_, "decoder Strip(content='{}', start={}, stop={}) is not supported", content, start, stop);
    strip_leading_space_ = start == 1;
  } else if (type == "Metaspace") {
    const std::string rep = j.value("replacement", "\xE2\x96\x81");
    decode_replace_.emplace_back(rep, " ");
    const std::string scheme = j.value("prepend_scheme", j.value("add_prefix_space", true) ? "always" : "never");
    strip_leading_space_ = scheme != "never";
  } else {
    fail_format(path_, "decoder type '{}' is not supported", type);
  }
}

void HfBpeTokenizer::finish() {
  try {
    configure_decoder(pipeline_.decoder);
  } catch (const nlohmann::json::exception& e) {
    fail_format(path_, "bad decoder: {}", e.what());
  }
  bytes_.assign(pieces_.size(), {});
  special_.assign(pieces_.size(), 0);
  for (size_t i = 0; i < size_t(n_model_tokens_); ++i) {
    const std::string& p = pieces_[i];
    if (decode_byte_level_) {
      byte_level::decode(p, bytes_[i]);
      continue;
    }
    const int b = decode_byte_fallback_ ? parse_byte_piece(p) : -1;
    if (b >= 0) {
      bytes_[i] = std::string(1, char(b));
      continue;
    }
    std::string t = p;
    for (const auto& [from, to] : decode_replace_) t = replace_all(std::move(t), from, to);
    bytes_[i] = std::move(t);
  }
  // Added tokens decode as their content (all of the families' added tokens are plain ASCII, on
  // which the decoders above are the identity).
  for (const AddedToken& t : added_.tokens()) {
    bytes_[size_t(t.id)] = t.content;
    special_[size_t(t.id)] = t.special;
  }
}

void HfBpeTokenizer::encode_text(std::string_view text, bool at_text_start, std::vector<int32_t>& out) const {
  std::string s = normalizer_.empty() ? std::string(text) : normalizer_.apply(text);
  thread_local std::vector<PreTokenizer::Range> words;
  pre_tokenizer_.run(s, at_text_start, words);
  for (const auto& [b, e] : words) model_.encode_word(std::string_view(s).substr(b, e - b), out);
}

}  // namespace lora
