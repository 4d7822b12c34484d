// lora tokenize: show how a tokenizer splits a text, one "id -> 'piece'" line per token (or just the
// ids), to check a tokenizer against llama.cpp's or Hugging Face's.
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "formats/hf_cache.h"
#include "formats/model_loader.h"
#include "tokenizer/tokenizer.h"

namespace lora::cli {

namespace {

struct TokenizeOptions {
  std::string model, tokenizer, prompt, file;
  bool ids_only = false, no_bos = false, no_parse_special = false;
};

// A model path's tokenizer without loading weights where the tokenizer can be read on its own
// (a folder holding tokenizer files, a GGUF file); otherwise through the model loader.
std::shared_ptr<Tokenizer> tokenizer_for_model(const std::string& spec) {
  namespace fs = std::filesystem;
  const std::string path = resolve_model_path(spec);
  if (fs::is_directory(path)) {
    for (const char* name : {"tokenizer.json", "tokenizer.model"})
      if (fs::exists(fs::path(path) / name)) return load_tokenizer(path);
  } else if (fs::path(path).extension() == ".gguf") {
    return load_tokenizer(path);
  }
  Model m = load_model(path);
  if (!m.tokenizer) fail("{}: no tokenizer found with this model; pass --tokenizer", path);
  return m.tokenizer;
}

// The piece as readable text: control characters and bytes that are not (yet) whole UTF-8
// characters are escaped, so a byte-fallback token shows as '\xE6' rather than garbage.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\n') out += "\\n", ++i;
    else if (c == '\t') out += "\\t", ++i;
    else if (c == '\r') out += "\\r", ++i;
    else if (c < 0x20 || c == 0x7F) out += fmt::format("\\x{:02X}", c), ++i;
    else if (c < 0x80) out += char(c), ++i;
    else {
      size_t n = 0;
      if (c >= 0xC2 && c <= 0xDF) n = 2;
      else if (c >= 0xE0 && c <= 0xEF) n = 3;
      else if (c >= 0xF0 && c <= 0xF4) n = 4;
      bool ok = n > 0 && i + n <= s.size();
      for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
      if (ok) out.append(s, i, n), i += n;
      else out += fmt::format("\\x{:02X}", c), ++i;
    }
  }
  return out;
}

void run(const TokenizeOptions& o) {
  if (o.model.empty() == o.tokenizer.empty()) fail("tokenize: give exactly one of -m MODEL or --tokenizer PATH");
  std::string text = o.prompt;
  if (!o.file.empty()) {
    std::ifstream in(o.file, std::ios::binary);
    if (!in) fail("{}: cannot open", o.file);
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  const std::shared_ptr<Tokenizer> tok = o.tokenizer.empty() ? tokenizer_for_model(o.model) : load_tokenizer(o.tokenizer);
  std::vector<int32_t> ids;
  if (tok->add_bos() && tok->bos_id() >= 0 && !o.no_bos) ids.push_back(tok->bos_id());
  const std::vector<int32_t> body = tok->encode(text, !o.no_parse_special);
  ids.insert(ids.end(), body.begin(), body.end());
  if (tok->add_eos() && tok->eos_id() >= 0) ids.push_back(tok->eos_id());
  if (o.ids_only) {
    std::string line;
    for (int32_t id : ids) line += (line.empty() ? "" : " ") + std::to_string(id);
    fmt::print("{}\n", line);
    return;
  }
  for (int32_t id : ids) fmt::print("{:6} -> '{}'\n", id, printable(tok->token_bytes(id)));
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Show the token ids and pieces of a text");
  auto o = std::make_shared<TokenizeOptions>();
  cmd->add_option("-m,--model", o->model, "model (Hugging Face folder, .gguf, llama2.c .bin) whose tokenizer to use");
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json, tokenizer.model, llama2.c tokenizer .bin, .gguf, or a folder");
  auto* prompt = cmd->add_option("-p,--prompt", o->prompt, "text to tokenize");
  auto* file = cmd->add_option("-f,--file", o->file, "file whose contents to tokenize");
  prompt->excludes(file);
  cmd->add_flag("--ids-only", o->ids_only, "print only the ids, space-separated on one line");
  cmd->add_flag("--no-bos", o->no_bos, "do not add the BOS token even if the tokenizer asks for it");
  cmd->add_flag("--no-parse-special", o->no_parse_special, "tokenize special tokens written in the text as plain text");
  cmd->callback([o, prompt, file] {
    if (prompt->count() + file->count() != 1) fail("tokenize: give one of -p TEXT or -f FILE");
    run(*o);
  });
}

}  // namespace lora::cli
