// End-to-end runs of the `lora` binary on the real stories260K assets.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "formats/model_loader.h"
#include "model/transformer.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace lora {
namespace {

using test::run_cli;
using test::TempDir;

TEST(Cli, InfoDescribesStories260K) {
  const auto r = run_cli("info " + test::stories_bin());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("LlamaForCausalLM"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("layers:          5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("8 heads, 4 kv heads, head_dim 8"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("context length:  512"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("llama2c"), std::string::npos) << r.out;

  const auto j = run_cli("info --json " + test::stories_gguf());
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const auto info = nlohmann::json::parse(j.out);
  EXPECT_EQ(info["format"], "gguf");
  EXPECT_EQ(info["config"]["hidden_size"], 64);
  EXPECT_EQ(info["config"]["vocab_size"], 512);
  // 260K parameters: the name of the model is its size.
  EXPECT_GT(info["parameters"].get<int64_t>(), 250000);
  EXPECT_LT(info["parameters"].get<int64_t>(), 300000);
}

TEST(Cli, BinAndGgufGiveTheSameFluentGreedyStory) {
  const auto bin = run_cli("generate -m " + test::stories_bin() + " --temp 0 -n 60");
  const auto gguf = run_cli("generate -m " + test::stories_gguf() + " --temp 0 -n 60");
  ASSERT_EQ(bin.exit_code, 0) << bin.err;
  ASSERT_EQ(gguf.exit_code, 0) << gguf.err;
  EXPECT_EQ(bin.out, gguf.out);
  // Fluent TinyStories English from BOS (see ../shared/assets/README.md).
  EXPECT_EQ(bin.out.rfind("Once upon a time", 0), 0u) << bin.out;
  EXPECT_NE(bin.out.find("Lily"), std::string::npos) << bin.out;
  EXPECT_NE(bin.err.find("tok/s"), std::string::npos) << bin.err;
}

TEST(Cli, SamplingIsSeededAndPromptIsContinued) {
  const std::string cmd = "generate -m " + test::stories_bin() + " -p 'The cat' --temp 1.0 --top-k 40 --top-p 0.9 -n 40 --seed ";
  const auto a = run_cli(cmd + "7"), b = run_cli(cmd + "7"), c = run_cli(cmd + "8");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);
  EXPECT_EQ(a.out.rfind("The cat", 0), 0u) << a.out;
}

TEST(Cli, PerplexityAgreesWithReference) {
  TempDir tmp;
  const std::string text = std::string(LORA_TEST_DATA_DIR) + "/tinystory.txt";
  const auto ids = run_cli("tokenize -m " + test::stories_bin() + " -f " + text + " --ids-only");
  ASSERT_EQ(ids.exit_code, 0) << ids.err;
  test::write_text(tmp / "ids.txt", ids.out);
  const auto ref = test::run_reference("nll --model " + test::stories_bin() + " --ids-file " + (tmp / "ids.txt") + " --ctx 64");
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const auto ours = run_cli("perplexity -m " + test::stories_bin() + " -f " + text + " --ctx 64 --batch 3 --json");
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  const auto want = nlohmann::json::parse(ref.out), got = nlohmann::json::parse(ours.out);
  EXPECT_EQ(got["tokens"], want["tokens"]);
  EXPECT_GT(got["tokens"].get<int>(), 150);
  EXPECT_NEAR(got["nll"].get<double>(), want["nll"].get<double>(), 1e-4);
  EXPECT_NEAR(got["perplexity"].get<double>(), std::exp(want["nll"].get<double>()), 1e-3);
  // A pretrained TinyStories model finds TinyStories-like text far from random (ln 512 = 6.24 nats).
  EXPECT_LT(got["nll"].get<double>(), 3.0);
}

TEST(Cli, ConvertToHfFolderReloadsWithIdenticalLogits) {
  TempDir tmp;
  const std::string out = tmp / "stories-hf";
  const auto r = run_cli("convert -m " + test::stories_bin() + " -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(std::filesystem::exists(out + "/" + f)) << f;

  const Model a = load_model(test::stories_bin()), b = load_model(out);
  ASSERT_TRUE(b.tokenizer);
  const std::string text = "Once upon a time, a little fox found a shiny stone.";
  EXPECT_EQ(a.tokenizer->encode_for_model(text), b.tokenizer->encode_for_model(text));
  std::vector<int32_t> tokens = a.tokenizer->encode_for_model(text);
  Transformer ta(a, 1, 64), tb(b, 1, 64);
  const Tensor& la = ta.forward(tokens.data(), 1, int64_t(tokens.size()), true);
  const Tensor& lb = tb.forward(tokens.data(), 1, int64_t(tokens.size()), true);
  ASSERT_EQ(la.numel(), lb.numel());
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.nbytes()), 0) << "logits differ after convert";

  // The converted folder works on its own in the CLI, with the same greedy story.
  const auto g1 = run_cli("generate -m " + out + " --temp 0 -n 30");
  const auto g2 = run_cli("generate -m " + test::stories_bin() + " --temp 0 -n 30");
  EXPECT_EQ(g1.out, g2.out);
}

// Each bad input gives one line on stderr that names the file, and exit code 1.
void expect_clean_failure(const std::string& args, const std::string& must_mention) {
  const auto r = run_cli(args);
  EXPECT_EQ(r.exit_code, 1) << args << "\nstdout: " << r.out << "\nstderr: " << r.err;
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(must_mention), std::string::npos) << r.err;
}

TEST(CliBadInput, CorruptModelsGiveOneClearError) {
  TempDir tmp;
  const std::string bin = test::read_text(test::stories_bin());
  const std::string gguf = test::read_text(test::stories_gguf());
  test::write_text(tmp / "half.bin", bin.substr(0, bin.size() / 2));
  test::write_text(tmp / "half.gguf", gguf.substr(0, gguf.size() / 2));
  test::write_text(tmp / "header.gguf", gguf.substr(0, 40));
  test::write_text(tmp / "garbage.bin", std::string(100, '\x7f'));
  expect_clean_failure("info " + (tmp / "half.bin"), "half.bin");
  expect_clean_failure("info " + (tmp / "half.gguf"), "half.gguf");
  expect_clean_failure("info " + (tmp / "header.gguf"), "header.gguf");
  expect_clean_failure("info " + (tmp / "garbage.bin"), "garbage.bin");
  expect_clean_failure("generate -m " + (tmp / "missing.gguf") + " -n 1", "missing.gguf");

  // A Hugging Face folder whose config.json lacks a required field, or names an unknown architecture.
  std::filesystem::create_directories(tmp / "nofield");
  test::write_text(tmp / "nofield/config.json", R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64})");
  expect_clean_failure("info " + (tmp / "nofield"), "config.json");
  std::filesystem::create_directories(tmp / "arch");
  test::write_text(tmp / "arch/config.json",
                   R"({"architectures": ["MambaForCausalLM"], "model_type": "mamba", "hidden_size": 64,
                       "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10})");
  expect_clean_failure("info " + (tmp / "arch"), "MambaForCausalLM");
}

}  // namespace
}  // namespace lora
