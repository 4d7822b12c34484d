// Vocabularies embedded in GGUF metadata (what llama.cpp's convert_hf_to_gguf.py writes):
// tokenizer.ggml.model "llama" = SentencePiece-style pieces with scores and token types;
// "gpt2" = byte-level BPE with tokenizer.ggml.merges and the pre-tokenizer named in tokenizer.ggml.pre.
// write_gguf_tokenizer is the other direction.
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "tokenizer/hf_bpe.h"
#include "tokenizer/spm_bpe.h"
#include "tokenizer/tokenizer.h"

namespace lora {

namespace {

using nlohmann::json;

json byte_level_step(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

json split_step(const char* pattern) {
  return {{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}};
}

// tokenizer.ggml.pre -> the Hugging Face pipeline the original tokenizer.json has (llama-vocab.cpp's
// table of regexes, restated as pre-tokenizers). Names not listed are refused: guessing would give
// ids the model was not trained on.
void pipeline_for_pre(const std::string& pre, const std::string& path, HfBpeTokenizer::Pipeline& p, bool& ignore_merges) {
  p.decoder = byte_level_step(true);
  p.post_processor = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
    p.pre_tokenizer = {{"type", "Sequence"}, {"pretokenizers", {split_step(split_pattern::kLlama3), byte_level_step(false)}}};
    ignore_merges = true;
  } else if (pre == "qwen2") {
    p.normalizer = {{"type", "NFC"}};
    p.pre_tokenizer = {{"type", "Sequence"}, {"pretokenizers", {split_step(split_pattern::kQwen2), byte_level_step(false)}}};
  } else if (pre == "default" || pre == "gpt2" || pre == "gpt-2") {
    p.pre_tokenizer = byte_level_step(true);
  } else if (pre == "smollm") {
    p.pre_tokenizer = {{"type", "Sequence"},
                       {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level_step(true)}}};
  } else {
    fail_format(path, "tokenizer.ggml.pre '{}' is not supported (known: llama-bpe, llama3, qwen2, default, gpt2, smollm)", pre);
  }
}

struct GgufVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<TokenType> types;
};

GgufVocab read_vocab(const GGUFFile& g) {
  GgufVocab v;
  const json& tokens = g.get_array("tokenizer.ggml.tokens");
  v.tokens.reserve(tokens.size());
  for (const json& t : tokens) {
    if (!t.is_string()) fail_format(g.path(), "tokenizer.ggml.tokens[{}] is not a string", v.tokens.size());
    v.tokens.push_back(t.get<std::string>());
  }
  const size_t n = v.tokens.size();
  if (n == 0) fail_format(g.path(), "tokenizer.ggml.tokens is empty");
  v.scores.assign(n, 0.0f);
  v.types.assign(n, TokenType::Normal);
  if (g.has("tokenizer.ggml.scores")) {
    const json& s = g.get_array("tokenizer.ggml.scores");
    if (s.size() != n) fail_format(g.path(), "tokenizer.ggml.scores has {} entries for {} tokens", s.size(), n);
    for (size_t i = 0; i < n; ++i) {
      if (!s[i].is_number()) fail_format(g.path(), "tokenizer.ggml.scores[{}] is not a number", i);
      v.scores[i] = s[i].get<float>();
    }
  }
  if (g.has("tokenizer.ggml.token_type")) {
    const json& t = g.get_array("tokenizer.ggml.token_type");
    if (t.size() != n) fail_format(g.path(), "tokenizer.ggml.token_type has {} entries for {} tokens", t.size(), n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t type = t[i].is_number_integer() ? t[i].get<int64_t>() : -1;
      if (type < 0 || type > 6) fail_format(g.path(), "tokenizer.ggml.token_type[{}] = {} is not a token type", i, t[i].dump());
      v.types[i] = static_cast<TokenType>(type);
    }
  }
  return v;
}

void set_specials(VocabTokenizer& tok, const GGUFFile& g, bool default_add_bos) {
  const int64_t n = tok.vocab_size();
  // Absent ids are written as -1 or as 0xFFFFFFFF (an unsigned -1); both mean none.
  auto id = [&](const char* key) {
    const int64_t v = g.get_int(key, -1);
    return v >= 0 && v < n ? int32_t(v) : -1;
  };
  tok.set_special_ids(id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id"), id("tokenizer.ggml.padding_token_id"));
  const bool add_bos = g.has("tokenizer.ggml.add_bos_token") ? g.metadata()["tokenizer.ggml.add_bos_token"].get<bool>() : default_add_bos;
  const bool add_eos = g.has("tokenizer.ggml.add_eos_token") && g.metadata()["tokenizer.ggml.add_eos_token"].get<bool>();
  tok.set_add_special(add_bos && tok.bos_id() >= 0, add_eos && tok.eos_id() >= 0);
  if (g.has("tokenizer.chat_template") && g.metadata()["tokenizer.chat_template"].is_string())
    tok.set_chat_template(g.get_string("tokenizer.chat_template"));
}

std::unique_ptr<Tokenizer> load_llama(const GGUFFile& g) {
  GgufVocab v = read_vocab(g);
  SpmVocab spm;
  spm.pieces = std::move(v.tokens);
  spm.scores = std::move(v.scores);
  spm.types = std::move(v.types);
  spm.add_dummy_prefix = !g.has("tokenizer.ggml.add_space_prefix") || g.metadata()["tokenizer.ggml.add_space_prefix"].get<bool>();
  auto tok = std::make_unique<SpmBpeTokenizer>(std::move(spm), "gguf-llama");
  set_specials(*tok, g, true);
  return tok;
}

std::unique_ptr<Tokenizer> load_gpt2(const GGUFFile& g) {
  GgufVocab v = read_vocab(g);
  const std::string pre = g.get_string("tokenizer.ggml.pre", "default");
  HfBpeTokenizer::Pipeline pipeline;
  HfBpeTokenizer::ModelOptions options;
  pipeline_for_pre(pre, g.path(), pipeline, options.ignore_merges);
  // Control and user-defined tokens are added tokens (cut out of the text before BPE), not model tokens.
  std::vector<AddedToken> added;
  std::vector<std::string> model_vocab = v.tokens;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (v.types[i] == TokenType::Control || v.types[i] == TokenType::UserDefined) {
      added.push_back(AddedToken{v.tokens[i], int32_t(i), v.types[i] == TokenType::Control});
      model_vocab[i].clear();
    }
  }
  auto tok = std::make_unique<HfBpeTokenizer>("gguf-gpt2", std::move(pipeline), options, std::move(model_vocab), g.path());
  const json& merges = g.get_array("tokenizer.ggml.merges");
  for (size_t i = 0; i < merges.size(); ++i) {
    if (!merges[i].is_string()) fail_format(g.path(), "tokenizer.ggml.merges[{}] is not a string", i);
    const std::string& s = merges[i].get_ref<const std::string&>();
    const size_t sp = s.find(' ', 1);
    if (sp == std::string::npos) fail_format(g.path(), "tokenizer.ggml.merges[{}] '{}' is not two tokens", i, s);
    tok->add_merge(std::string_view(s).substr(0, sp), std::string_view(s).substr(sp + 1), i);
  }
  for (AddedToken& a : added) tok->add_token(std::move(a));
  tok->finish();
  set_specials(*tok, g, options.ignore_merges);
  return tok;
}

constexpr const char* kPreNames[] = {"llama-bpe", "qwen2", "smollm", "default"};

// A pipeline step as it affects the ids: ByteLevel's trim_offsets only changes the offsets it reports.
json without_offsets(json j) {
  if (j.is_object()) {
    j.erase("trim_offsets");
    for (auto& [k, v] : j.items()) v = without_offsets(v);
  } else if (j.is_array()) {
    for (json& v : j) v = without_offsets(v);
  }
  return j;
}

// The tokenizer.ggml.pre name whose pipeline is this tokenizer's (what convert_hf_to_gguf.py recognizes
// by hashing the tokenizer's output; here by comparing the pipelines themselves).
std::string pre_name_of(const HfBpeTokenizer& tok) {
  const HfBpeTokenizer::Pipeline& have = tok.pipeline();
  for (const char* name : kPreNames) {
    HfBpeTokenizer::Pipeline want;
    bool ignore_merges = false;
    pipeline_for_pre(name, "", want, ignore_merges);
    const json want_normalizer = want.normalizer.is_null() ? json() : want.normalizer;
    const json have_normalizer = have.normalizer.is_null() ? json() : have.normalizer;
    if (without_offsets(have.pre_tokenizer) == without_offsets(want.pre_tokenizer) && have_normalizer == want_normalizer &&
        tok.model_options().ignore_merges == ignore_merges)
      return name;
  }
  fail("this tokenizer's pre-tokenizer has no llama.cpp name here (known: llama-bpe, qwen2, smollm, default): {}",
       have.pre_tokenizer.dump());
}

void write_special_ids(const Tokenizer& tok, GGUFWriter& out) {
  if (tok.bos_id() >= 0) out.set_u32("tokenizer.ggml.bos_token_id", uint32_t(tok.bos_id()));
  if (tok.eos_id() >= 0) out.set_u32("tokenizer.ggml.eos_token_id", uint32_t(tok.eos_id()));
  if (tok.pad_id() >= 0) out.set_u32("tokenizer.ggml.padding_token_id", uint32_t(tok.pad_id()));
  out.set_bool("tokenizer.ggml.add_bos_token", tok.add_bos());
  out.set_bool("tokenizer.ggml.add_eos_token", tok.add_eos());
  if (!tok.chat_template().empty()) out.set_string("tokenizer.chat_template", tok.chat_template());
}

void write_spm(const SpmBpeTokenizer& tok, GGUFWriter& out) {
  const SpmVocab& v = tok.vocab();
  if (!v.export_problem.empty()) fail("cannot write this {} tokenizer into GGUF exactly: {}", tok.kind(), v.export_problem);
  const std::string metaspace = "\xE2\x96\x81";
  json tokens = json::array(), scores = json::array(), types = json::array();
  int64_t unk = -1;
  for (size_t i = 0; i < v.pieces.size(); ++i) {
    std::string piece = v.pieces[i];
    if (v.space != metaspace)  // llama2.c files spell spaces as spaces; GGUF "llama" vocabularies use ▁
      for (size_t at = piece.find(v.space); at != std::string::npos; at = piece.find(v.space, at + metaspace.size()))
        piece.replace(at, v.space.size(), metaspace);
    tokens.push_back(piece);
    scores.push_back(v.scores[i]);
    types.push_back(int(v.types[i]));
    if (unk < 0 && v.types[i] == TokenType::Unknown) unk = int64_t(i);
  }
  out.set_string("tokenizer.ggml.model", "llama");
  out.set_array("tokenizer.ggml.tokens", GGUFValueType::STRING, std::move(tokens));
  out.set_array("tokenizer.ggml.scores", GGUFValueType::FLOAT32, std::move(scores));
  out.set_array("tokenizer.ggml.token_type", GGUFValueType::INT32, std::move(types));
  if (unk >= 0) out.set_u32("tokenizer.ggml.unknown_token_id", uint32_t(unk));
  out.set_bool("tokenizer.ggml.add_space_prefix", v.add_dummy_prefix);
  write_special_ids(tok, out);
}

void write_gpt2(const HfBpeTokenizer& tok, GGUFWriter& out) {
  const std::string pre = pre_name_of(tok);
  std::vector<int> types(size_t(tok.vocab_size()), int(TokenType::Normal));
  std::vector<std::string> texts(size_t(tok.vocab_size()));
  for (int32_t id = 0; id < tok.vocab_size(); ++id) texts[size_t(id)] = tok.token_text(id);
  for (const AddedToken& a : tok.added_tokens().tokens()) {
    types[size_t(a.id)] = int(a.special ? TokenType::Control : TokenType::UserDefined);
    texts[size_t(a.id)] = a.content;
  }
  json tokens = json::array(), token_types = json::array(), merges = json::array();
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (texts[size_t(id)].empty() && !tok.in_model_vocab(id) && types[size_t(id)] == int(TokenType::Normal)) {
      // an id the vocabulary leaves unused, written as convert_hf_to_gguf.py does
      tokens.push_back("[PAD" + std::to_string(id) + "]");
      token_types.push_back(int(TokenType::Unused));
      continue;
    }
    tokens.push_back(texts[size_t(id)]);
    token_types.push_back(types[size_t(id)]);
  }
  for (const auto& [l, r] : tok.merges()) merges.push_back(tok.token_text(l) + " " + tok.token_text(r));
  out.set_string("tokenizer.ggml.model", "gpt2");
  out.set_string("tokenizer.ggml.pre", pre);
  out.set_array("tokenizer.ggml.tokens", GGUFValueType::STRING, std::move(tokens));
  out.set_array("tokenizer.ggml.token_type", GGUFValueType::INT32, std::move(token_types));
  out.set_array("tokenizer.ggml.merges", GGUFValueType::STRING, std::move(merges));
  write_special_ids(tok, out);
}

// A SentencePiece-style tokenizer.json (Llama 2 / Mistral exports: BPE on "▁"-text with byte fallback)
// as a GGUF "llama" vocabulary. That vocabulary merges by piece score, so each piece gets the score
// −(rank of the first merge producing it): the highest-scoring pair is then the lowest-ranked merge, as in
// the tokenizer.json (whose merges LlamaConverter derived from the scores in the first place).
void write_hf_spm(const HfBpeTokenizer& tok, GGUFWriter& out) {
  const int32_t n = tok.vocab_size();
  std::vector<float> scores(size_t(n), -1e9f);  // pieces no merge produces: never chosen by a merge
  std::vector<int> types(size_t(n), static_cast<int>(TokenType::Normal));
  for (size_t rank = 0; rank < tok.merges().size(); ++rank) {
    const auto& [l, r] = tok.merges()[rank];
    const int32_t id = tok.find_token(tok.token_text(l) + tok.token_text(r));
    if (id >= 0 && scores[size_t(id)] == -1e9f) scores[size_t(id)] = -float(rank);
  }
  const std::string& unk = tok.model_options().unk_token;
  int64_t unk_id = -1;
  for (int32_t id = 0; id < n; ++id) {
    const std::string t = tok.token_text(id);
    if (!unk.empty() && t == unk) types[size_t(id)] = int(TokenType::Unknown), unk_id = id;
    else if (tok.model_options().byte_fallback && t.size() == 6 && t.rfind("<0x", 0) == 0 && t.back() == '>')
      types[size_t(id)] = int(TokenType::Byte);
  }
  for (const AddedToken& a : tok.added_tokens().tokens())
    if (types[size_t(a.id)] == int(TokenType::Normal))
      types[size_t(a.id)] = int(a.special ? TokenType::Control : TokenType::UserDefined);
  // The dummy prefix: a Prepend("▁") normalizer, or a Metaspace pre-tokenizer that prepends.
  const HfBpeTokenizer::Pipeline& p = tok.pipeline();
  bool dummy_prefix = p.normalizer.dump().find("\"Prepend\"") != std::string::npos;
  auto metaspace_prepends = [](const json& step) {
    return step.is_object() && step.value("type", "") == "Metaspace" &&
           step.value("prepend_scheme", step.value("add_prefix_space", true) ? "always" : "never") != "never";
  };
  if (metaspace_prepends(p.pre_tokenizer)) dummy_prefix = true;
  if (p.pre_tokenizer.is_object() && p.pre_tokenizer.contains("pretokenizers"))
    for (const json& step : p.pre_tokenizer["pretokenizers"]) dummy_prefix = dummy_prefix || metaspace_prepends(step);

  json tokens = json::array(), score_list = json::array(), type_list = json::array();
  for (int32_t id = 0; id < n; ++id) {
    tokens.push_back(tok.token_text(id));
    score_list.push_back(scores[size_t(id)]);
    type_list.push_back(types[size_t(id)]);
  }
  out.set_string("tokenizer.ggml.model", "llama");
  out.set_array("tokenizer.ggml.tokens", GGUFValueType::STRING, std::move(tokens));
  out.set_array("tokenizer.ggml.scores", GGUFValueType::FLOAT32, std::move(score_list));
  out.set_array("tokenizer.ggml.token_type", GGUFValueType::INT32, std::move(type_list));
  if (unk_id >= 0) out.set_u32("tokenizer.ggml.unknown_token_id", uint32_t(unk_id));
  out.set_bool("tokenizer.ggml.add_space_prefix", dummy_prefix);
  write_special_ids(tok, out);
}

}  // namespace

void write_gguf_tokenizer(const Tokenizer& tok, GGUFWriter& out) {
  if (const auto* spm = dynamic_cast<const SpmBpeTokenizer*>(&tok)) return write_spm(*spm, out);
  if (const auto* hf = dynamic_cast<const HfBpeTokenizer*>(&tok)) {
    if (hf->model_options().byte_fallback || hf->pipeline().decoder.dump().find("ByteLevel") == std::string::npos)
      return write_hf_spm(*hf, out);
    return write_gpt2(*hf, out);
  }
  fail("a {} tokenizer cannot be written into GGUF", tok.kind());
}

std::unique_ptr<Tokenizer> load_tokenizer_from_gguf(const GGUFFile& g) {
  const std::string model = g.get_string("tokenizer.ggml.model", "");
  try {
    if (model == "llama") return load_llama(g);
    if (model == "gpt2") return load_gpt2(g);
  } catch (const FormatError&) {
    throw;
  } catch (const std::exception& e) {
    fail_format(g.path(), "bad tokenizer metadata: {}", e.what());
  }
  if (model.empty()) fail_format(g.path(), "no tokenizer in this GGUF (tokenizer.ggml.model is missing)");
  fail_format(g.path(), "tokenizer.ggml.model '{}' is not supported (llama, gpt2)", model);
}

}  // namespace lora
