#pragma once
// Reading llama.cpp's tokenizer test vectors (vocab-tests/ggml-vocab-<name>.gguf.inp / .out), as
// tests/test-tokenizer-0.cpp does: each case is the text between separator lines, without the
// newline that ends its last line; .out holds one line of ids per case, without BOS.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace lora::test {

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

inline std::vector<VocabCase> read_vocab_cases(const std::string& name) {
  const std::string base = asset("vocab-tests/ggml-vocab-" + name + ".gguf");
  std::ifstream inp(base + ".inp", std::ios::binary), out(base + ".out", std::ios::binary);
  if (!inp || !out) throw std::runtime_error("cannot read test vectors " + base + ".inp/.out");
  std::vector<VocabCase> cases;
  std::string line, text;
  bool first_line = true;
  while (std::getline(inp, line)) {
    if (line == "__ggml_vocab_test__") {
      cases.push_back({text, {}});
      text.clear();
      first_line = true;
      continue;
    }
    if (!first_line) text += '\n';
    text += line;
    first_line = false;
  }
  size_t i = 0;
  while (std::getline(out, line)) {
    if (i >= cases.size()) throw std::runtime_error(base + ".out has more lines than cases");
    std::istringstream ss(line);
    int32_t id;
    while (ss >> id) cases[i].ids.push_back(id);
    ++i;
  }
  if (i != cases.size()) throw std::runtime_error(base + ".out has fewer lines than cases");
  return cases;
}

inline std::string ids_to_string(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
  return s;
}

}  // namespace lora::test
