// Tokenizer encoding speed, single thread, on a few MB of generated mixed text (English prose,
// Chinese/Japanese, source code, numbers, emoji), for each tokenizer asset. Prints MB/s and
// tokens/s; also the load time of each file.
//   ./build/bench/bench_tokenizer [MB] [only tokenizers whose name contains this]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_common.h"
#include "tokenizer/tokenizer.h"

namespace {

// Deterministic mixed text: paragraphs drawn from small pools with a fixed LCG.
std::string mixed_text(size_t bytes) {
  const std::vector<std::string> english = {
      "The quick brown fox jumps over the lazy dog. ", "Once upon a time, there was a little girl named Lily. ",
      "She loved to play outside in the park with her friends, and they'd run until sunset! ",
      "In 2023, researchers reported a 3.7% improvement on the benchmark (p < 0.01). ",
      "\"Don't worry,\" he said, \"we'll figure it out tomorrow.\" ", "Fine-tuning with LoRA keeps the base weights frozen; ",
      "only the low-rank matrices A and B are trained, which saves memory. "};
  const std::vector<std::string> cjk = {
      "今天天气很好，我们去公园散步吧。", "机器学习是人工智能的一个分支，它使计算机能够从数据中学习。",
      "東京は日本の首都であり、世界で最も人口の多い都市の一つです。", "大規模言語モデルの微調整には多くの計算資源が必要です。",
      "안녕하세요, 만나서 반갑습니다. ", "我喜欢读书和写代码。"};
  const std::vector<std::string> code = {
      "def forward(self, x):\n    return self.lora_b(self.lora_a(self.dropout(x))) * self.scaling\n\n",
      "for (int i = 0; i < n; ++i) {\n  y[i] += alpha * x[i];\n}\n", "    if (ids.size() > max_len) ids.resize(max_len);\n",
      "const auto tok = lora::load_tokenizer(\"tokenizer.json\");  // 151643 tokens\n",
      "{\"role\": \"user\", \"content\": \"Hello!\"}\n", "    x = torch.randn(4, 4096, dtype=torch.bfloat16)\n"};
  const std::vector<std::string> other = {"12345 67890 3.14159 ", "🦙🚀 ", "\n\n", "   ", "\t", "naïve café résumé "};
  std::string s;
  uint64_t state = 42;
  auto next = [&](size_t n) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return size_t(state >> 33) % n;
  };
  while (s.size() < bytes) {
    const size_t kind = next(10);
    const std::vector<std::string>& pool = kind < 5 ? english : kind < 7 ? cjk : kind < 9 ? code : other;
    for (size_t k = 0, n = 1 + next(4); k < n; ++k) s += pool[next(pool.size())];
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const double mb = argc > 1 ? std::atof(argv[1]) : 4.0;
  const std::string text = mixed_text(size_t(mb * 1e6));
  const std::string assets = LORA_ASSETS_DIR;
  struct Case {
    const char* name;
    std::string path;
  };
  const std::vector<Case> cases = {
      {"qwen3 tokenizer.json (byte-level BPE)", assets + "/tokenizers/qwen3/tokenizer.json"},
      {"llama3 tokenizer.json (byte-level BPE)", assets + "/tokenizers/llama3/tokenizer.json"},
      {"llama2 tokenizer.model (libsentencepiece)", assets + "/tokenizers/llama2/tokenizer.model"},
      {"llama2 tokenizer.llama2c.bin (score BPE)", assets + "/tokenizers/llama2/tokenizer.llama2c.bin"},
      {"llama-spm vocab-only GGUF (score BPE)", assets + "/vocab-tests/ggml-vocab-llama-spm.gguf"},
  };
  std::printf("text: %.2f MB mixed English/CJK/code, single thread\n", text.size() / 1e6);
  std::printf("%-44s %8s %10s %12s %10s\n", "tokenizer", "load s", "MB/s", "tokens/s", "tokens");
  const std::string only = argc > 2 ? argv[2] : "";
  for (const Case& c : cases) {
    if (std::string(c.name).find(only) == std::string::npos) continue;
    const double t0 = lora::bench::now_seconds();
    const auto tok = lora::load_tokenizer(c.path);
    const double load = lora::bench::now_seconds() - t0;
    size_t n_tokens = 0;
    const double t = lora::bench::median_time(3, [&] { n_tokens = tok->encode(text).size(); });
    std::printf("%-44s %8.2f %10.2f %12.0f %10zu\n", c.name, load, text.size() / 1e6 / t, n_tokens / t, n_tokens);
  }
  std::printf("peak RSS %.0f MiB\n", lora::bench::peak_rss_mib());
  return 0;
}
