// save_hf_tokenizer: any tokenizer here as a Hugging Face tokenizer.json + tokenizer_config.json
// that encodes to the same ids. Byte-level / tokenizer.json tokenizers are written back from their
// pipeline; SentencePiece-style vocabularies (llama2.c, tokenizer.model, GGUF "llama") become a BPE
// model with byte fallback whose merges come from the piece scores, the way Hugging Face's
// LlamaConverter builds them: every split of a piece into two pieces is a merge, ranked by the
// score of the merged piece.
#include <algorithm>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "tokenizer/hf_bpe.h"
#include "tokenizer/spm_bpe.h"
#include "tokenizer/utf8.h"

namespace lora {

namespace {

using nlohmann::json;

const std::string kMetaspace = "\xE2\x96\x81";  // ▁

std::string quoted(const std::string& s) { return json(s).dump(-1, ' ', false, json::error_handler_t::strict); }

std::string merge_entry(const std::string& l, const std::string& r) {
  // "a b" is what every tokenizers version reads; tokens with a space need the list form.
  if (l.find(' ') == std::string::npos && r.find(' ') == std::string::npos) return quoted(l + " " + r);
  return "[" + quoted(l) + "," + quoted(r) + "]";
}

// tokenizer.json text. The vocabulary and merges are written by hand: they are large, and nlohmann's
// object would reorder the vocabulary by key.
std::string tokenizer_json(const json& head, const json& model_head, const std::vector<std::pair<std::string, int32_t>>& vocab,
                           const std::vector<std::pair<std::string, std::string>>& merges) {
  std::string model = model_head.dump();
  model.pop_back();  // the closing brace: vocab and merges follow
  model += ",\"vocab\":{";
  for (size_t i = 0; i < vocab.size(); ++i) model += (i ? "," : "") + quoted(vocab[i].first) + ":" + std::to_string(vocab[i].second);
  model += "},\"merges\":[";
  for (size_t i = 0; i < merges.size(); ++i) model += (i ? "," : "") + merge_entry(merges[i].first, merges[i].second);
  model += "]}";
  std::string out = head.dump(1);
  out.erase(out.find_last_of('}'));
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  out += ",\n \"model\": " + model + "\n}\n";
  return out;
}

json added_tokens_json(const AddedTokenMatcher& added) {
  std::vector<AddedToken> tokens = added.tokens();
  std::sort(tokens.begin(), tokens.end(), [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  json list = json::array();
  for (const AddedToken& t : tokens)
    list.push_back({{"id", t.id}, {"content", t.content}, {"single_word", t.single_word}, {"lstrip", t.lstrip},
                    {"rstrip", t.rstrip}, {"normalized", t.normalized}, {"special", t.special}});
  return list;
}

json config_json(const VocabTokenizer& tok, const std::string& tokenizer_class) {
  json c = json::object();
  auto name = [&](int32_t id) { return id >= 0 ? json(tok.token_text(id)) : json(nullptr); };
  c["add_bos_token"] = tok.add_bos();
  c["add_eos_token"] = tok.add_eos();
  c["bos_token"] = name(tok.bos_id());
  c["eos_token"] = name(tok.eos_id());
  if (tok.pad_id() >= 0) c["pad_token"] = name(tok.pad_id());
  c["clean_up_tokenization_spaces"] = false;
  c["tokenizer_class"] = tokenizer_class;
  json decoder = json::object();
  for (const AddedToken& t : tok.added_tokens().tokens())
    decoder[std::to_string(t.id)] = {{"content", t.content}, {"lstrip", t.lstrip}, {"normalized", t.normalized},
                                     {"rstrip", t.rstrip}, {"single_word", t.single_word}, {"special", t.special}};
  c["added_tokens_decoder"] = decoder;
  if (!tok.chat_template().empty()) c["chat_template"] = tok.chat_template();
  return c;
}

json head_json(const AddedTokenMatcher& added) {
  return {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added_tokens_json(added)}};
}

void export_hf_bpe(const HfBpeTokenizer& tok, std::string& tokenizer, std::string& config) {
  json head = head_json(tok.added_tokens());
  const HfBpeTokenizer::Pipeline& p = tok.pipeline();
  head["normalizer"] = p.normalizer;
  head["pre_tokenizer"] = p.pre_tokenizer;
  head["post_processor"] = p.post_processor;
  head["decoder"] = p.decoder;
  const HfBpeTokenizer::ModelOptions& o = tok.model_options();
  const json model = {{"type", "BPE"}, {"dropout", nullptr},
                      {"unk_token", o.unk_token.empty() ? json(nullptr) : json(o.unk_token)},
                      {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                      {"fuse_unk", o.fuse_unk}, {"byte_fallback", o.byte_fallback}, {"ignore_merges", o.ignore_merges}};
  std::vector<std::pair<std::string, int32_t>> vocab;
  for (int32_t id = 0; id < tok.vocab_size(); ++id)
    if (tok.in_model_vocab(id)) vocab.emplace_back(tok.token_text(id), id);
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(tok.merges().size());
  for (const auto& [l, r] : tok.merges()) merges.emplace_back(tok.token_text(l), tok.token_text(r));
  tokenizer = tokenizer_json(head, model, vocab, merges);
  config = config_json(tok, "PreTrainedTokenizerFast").dump(2);
}

std::string to_metaspace(const std::string& piece, const std::string& space) {
  if (space == kMetaspace) return piece;
  std::string out;
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, space.size(), space) == 0) out += kMetaspace, i += space.size();
    else out += piece[i++];
  }
  return out;
}

void export_spm(const SpmBpeTokenizer& tok, std::string& tokenizer, std::string& config) {
  const SpmVocab& v = tok.vocab();
  if (!v.export_problem.empty()) fail("cannot write this {} tokenizer as tokenizer.json: {}", tok.kind(), v.export_problem);
  const size_t n = v.pieces.size();
  std::vector<std::string> pieces(n);
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::unordered_map<std::string, int32_t> id_of;  // first id of each piece, as SentencePiece resolves duplicates
  for (size_t i = 0; i < n; ++i) {
    pieces[i] = to_metaspace(v.pieces[i], v.space);
    if (id_of.emplace(pieces[i], int32_t(i)).second) vocab.emplace_back(pieces[i], int32_t(i));
  }
  auto mergeable = [&](int32_t id) { return v.types[size_t(id)] == TokenType::Normal || v.types[size_t(id)] == TokenType::UserDefined; };

  struct Merge {
    float score;
    int32_t merged, left, right;
  };
  std::vector<Merge> merges;
  for (const auto& [piece, id] : vocab) {
    if (!mergeable(id)) continue;
    for (size_t cut = utf8::char_length(piece, 0); cut < piece.size(); cut += utf8::char_length(piece, cut)) {
      const auto l = id_of.find(piece.substr(0, cut)), r = id_of.find(piece.substr(cut));
      if (l != id_of.end() && r != id_of.end() && mergeable(l->second) && mergeable(r->second))
        merges.push_back({v.scores[size_t(id)], id, l->second, r->second});
    }
  }
  // Highest score first; ties by the merged piece's id, then by the parts' ids (LlamaConverter).
  std::sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.merged != b.merged) return a.merged < b.merged;
    return a.left != b.left ? a.left < b.left : a.right < b.right;
  });
  std::vector<std::pair<std::string, std::string>> merge_text;
  merge_text.reserve(merges.size());
  for (const Merge& m : merges) merge_text.emplace_back(pieces[size_t(m.left)], pieces[size_t(m.right)]);

  std::string unk;
  bool has_bytes = false;
  for (size_t i = 0; i < n; ++i) {
    if (v.types[i] == TokenType::Unknown && unk.empty()) unk = pieces[i];
    has_bytes = has_bytes || v.types[i] == TokenType::Byte;
  }
  json head = head_json(tok.added_tokens());
  json normalizers = json::array();
  if (v.add_dummy_prefix) normalizers.push_back({{"type", "Prepend"}, {"prepend", kMetaspace}});
  normalizers.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMetaspace}});
  head["normalizer"] = {{"type", "Sequence"}, {"normalizers", normalizers}};
  head["pre_tokenizer"] = nullptr;
  if (tok.add_bos() || tok.add_eos()) {
    json single = json::array(), pair = json::array(), specials = json::object();
    auto special = [&](int32_t id, int type_id) {
      const std::string t = tok.token_text(id);
      specials[t] = {{"id", t}, {"ids", {id}}, {"tokens", {t}}};
      return json{{"SpecialToken", {{"id", t}, {"type_id", type_id}}}};
    };
    if (tok.add_bos()) single.push_back(special(tok.bos_id(), 0)), pair.push_back(special(tok.bos_id(), 0));
    single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    pair.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    if (tok.add_eos()) single.push_back(special(tok.eos_id(), 0)), pair.push_back(special(tok.eos_id(), 0));
    if (tok.add_bos()) pair.push_back(special(tok.bos_id(), 1));
    pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
    if (tok.add_eos()) pair.push_back(special(tok.eos_id(), 1));
    head["post_processor"] = {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
  } else {
    head["post_processor"] = nullptr;
  }
  json decoders = json::array({{{"type", "Replace"}, {"pattern", {{"String", kMetaspace}}}, {"content", " "}},
                               {{"type", "ByteFallback"}}, {{"type", "Fuse"}}});
  if (v.add_dummy_prefix) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  head["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
  const json model = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", unk.empty() ? json(nullptr) : json(unk)},
                      {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", true},
                      {"byte_fallback", has_bytes}, {"ignore_merges", false}};
  tokenizer = tokenizer_json(head, model, vocab, merge_text);
  json c = config_json(tok, "LlamaTokenizerFast");
  if (!unk.empty()) c["unk_token"] = unk;
  c["legacy"] = true;
  config = c.dump(2);
}

}  // namespace

void save_hf_tokenizer(const Tokenizer& tok, const std::string& dir) {
  std::string tokenizer, config;
  try {
    if (const auto* hf = dynamic_cast<const HfBpeTokenizer*>(&tok)) export_hf_bpe(*hf, tokenizer, config);
    else if (const auto* spm = dynamic_cast<const SpmBpeTokenizer*>(&tok)) export_spm(*spm, tokenizer, config);
    else fail("a {} tokenizer cannot be written as tokenizer.json", tok.kind());
  } catch (const json::exception& e) {
    fail("{}: cannot write the tokenizer as JSON: {}", dir, e.what());
  }
  std::filesystem::create_directories(dir);
  write_file_atomic((std::filesystem::path(dir) / "tokenizer.json").string(), tokenizer);
  write_file_atomic((std::filesystem::path(dir) / "tokenizer_config.json").string(), config + "\n");
}

}  // namespace lora
