// Vocabularies embedded in GGUF metadata (what llama.cpp's convert_hf_to_gguf.py writes):
// tokenizer.ggml.model "llama" = SentencePiece-style pieces with scores and token types;
// "gpt2" = byte-level BPE with tokenizer.ggml.merges and the pre-tokenizer named in tokenizer.ggml.pre.
#include "core/error.h"
#include "formats/gguf.h"
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

}  // namespace

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
