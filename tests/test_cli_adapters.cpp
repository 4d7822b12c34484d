// End-to-end runs of the adapter commands: --adapter on generate/perplexity (PEFT folders and GGUF
// files, with scales), lora merge, lora adapter info/combine/convert, and their bad-input errors.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "adapter_test_util.h"

namespace lora {
namespace {

using test::run_cli;
using test::TempDir;

const std::string kGreedy = " --temp 0 -n 40 -p 'Once upon a time'";

struct Fixtures {
  TempDir tmp;
  Fixtures() {
    test::make_fixture(test::stories_bin(), tmp / "plain", "plain", 101);
    test::make_fixture(test::stories_bin(), tmp / "dora", "dora", 102);
  }
};

TEST(CliAdapters, GenerateAndPerplexityTakePeftAndGgufAdaptersWithScales) {
  Fixtures f;
  const std::string m = " -m " + test::stories_bin();
  const auto conv = run_cli("adapter convert " + (f.tmp / "plain") + " -o " + (f.tmp / "plain.gguf") + m);
  ASSERT_EQ(conv.exit_code, 0) << conv.err;
  const auto base = run_cli("generate" + m + kGreedy);
  const auto peft = run_cli("generate" + m + kGreedy + " --adapter " + (f.tmp / "plain"));
  const auto gguf = run_cli("generate" + m + kGreedy + " --adapter " + (f.tmp / "plain.gguf"));
  const auto zero = run_cli("generate" + m + kGreedy + " --adapter " + (f.tmp / "plain") + ":0");
  const auto two = run_cli("generate" + m + kGreedy + " --adapter " + (f.tmp / "plain") + ":0.5 --adapter " + (f.tmp / "dora"));
  for (const auto* r : {&base, &peft, &gguf, &zero, &two}) ASSERT_EQ(r->exit_code, 0) << r->err;
  EXPECT_EQ(peft.out, gguf.out);
  EXPECT_NE(peft.out, base.out);
  EXPECT_EQ(zero.out, base.out);  // scale 0: nothing added
  EXPECT_NE(two.out, peft.out);
  EXPECT_EQ(base.out.rfind("Once upon a time", 0), 0u);

  // Perplexity with the adapter on the fly equals perplexity of the merged model.
  const std::string text = " -f " + std::string(LORA_TEST_DATA_DIR) + "/tinystory.txt --ctx 64 --json";
  ASSERT_EQ(run_cli("merge" + m + " --adapter " + (f.tmp / "dora") + " -o " + (f.tmp / "merged")).exit_code, 0);
  const auto fly = run_cli("perplexity" + m + text + " --adapter " + (f.tmp / "dora"));
  const auto merged = run_cli("perplexity -m " + (f.tmp / "merged") + text);
  ASSERT_EQ(fly.exit_code, 0) << fly.err;
  ASSERT_EQ(merged.exit_code, 0) << merged.err;
  EXPECT_NEAR(nlohmann::json::parse(fly.out)["nll"].get<double>(), nlohmann::json::parse(merged.out)["nll"].get<double>(), 1e-5);
}

TEST(CliAdapters, InfoDescribesPeftAndGgufAdapters) {
  Fixtures f;
  const auto text = run_cli("adapter info " + (f.tmp / "plain"));
  ASSERT_EQ(text.exit_code, 0) << text.err;
  for (const char* s : {"(peft)", "type:           LoRA", "rank:           2 (5 modules), 4 (31 modules)", "alpha:          8",
                        "parameters:     23064", "size on disk:", "embed_tokens"})
    EXPECT_NE(text.out.find(s), std::string::npos) << s << "\n" << text.out;

  const auto j = run_cli("adapter info --json " + (f.tmp / "dora"));
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const auto info = nlohmann::json::parse(j.out);
  EXPECT_EQ(info["type"], "DoRA");
  EXPECT_EQ(info["r"], 4);
  EXPECT_EQ(info["base_model"], test::stories_bin());
  EXPECT_EQ(info["adapted_layers"], 5);
  EXPECT_EQ(info["parameters"], 26120);  // A, B and the magnitude of 35 linears
  EXPECT_EQ(info["size_bytes"], std::filesystem::file_size(f.tmp / "dora/adapter_model.safetensors") +
                                    std::filesystem::file_size(f.tmp / "dora/adapter_config.json"));

  ASSERT_EQ(run_cli("adapter convert " + (f.tmp / "plain") + " -o " + (f.tmp / "p.gguf") + " -m " + test::stories_bin()).exit_code, 0);
  const auto g = nlohmann::json::parse(run_cli("adapter info --json " + (f.tmp / "p.gguf")).out);
  EXPECT_EQ(g["format"], "gguf");
  EXPECT_EQ(g["architecture"], "llama");
  EXPECT_EQ(g["parameters"], 23064);
  EXPECT_EQ(g["lora_alpha"], 8.0);

  // Another PEFT type is described from its config and tensors.
  std::filesystem::create_directories(f.tmp / "ia3");
  test::write_text(f.tmp / "ia3/adapter_config.json", R"({"peft_type": "IA3", "target_modules": ["k_proj", "v_proj"]})");
  const auto ia3 = run_cli("adapter info " + (f.tmp / "ia3"));
  ASSERT_EQ(ia3.exit_code, 0) << ia3.err;
  EXPECT_NE(ia3.out.find("IA3"), std::string::npos) << ia3.out;
}

TEST(CliAdapters, CombineAndConvertWriteUsableAdapters) {
  Fixtures f;
  test::make_fixture(test::stories_bin(), f.tmp / "rs", "rslora", 103);
  const std::string m = " -m " + test::stories_bin();
  const std::string in = " --adapter " + (f.tmp / "plain") + ":0.5 --adapter " + (f.tmp / "rs") + ":0.5";
  const auto cat = run_cli("adapter combine" + in + " --method cat -o " + (f.tmp / "cat"));
  ASSERT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_NE(cat.err.find("rank"), std::string::npos);
  const auto svd = run_cli("adapter combine" + in + " --method svd --rank 8 -o " + (f.tmp / "svd.gguf") + m);
  ASSERT_EQ(svd.exit_code, 0) << svd.err;
  // cat = both adapters at 0.5; svd at full rank (8 = 4 + 4) too; the GGUF back to PEFT as well
  ASSERT_EQ(run_cli("adapter convert " + (f.tmp / "svd.gguf") + " -o " + (f.tmp / "svd-peft") + m).exit_code, 0);
  const std::string text = " -f " + std::string(LORA_TEST_DATA_DIR) + "/tinystory.txt --ctx 64 --json";
  auto nll = [&](const std::string& adapters) {
    const auto r = run_cli("perplexity" + m + text + adapters);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out)["nll"].get<double>();
  };
  const double both = nll(in);
  EXPECT_NEAR(nll(" --adapter " + (f.tmp / "cat")), both, 1e-5);
  EXPECT_NEAR(nll(" --adapter " + (f.tmp / "svd.gguf")), both, 1e-4);
  EXPECT_NEAR(nll(" --adapter " + (f.tmp / "svd-peft")), both, 1e-4);
  EXPECT_GT(std::fabs(nll("") - both), 1e-3);
}

TEST(CliAdapters, MergeIntoAHfBaseCopiesItsTokenizerFiles) {
  Fixtures f;
  ASSERT_EQ(run_cli("convert -m " + test::stories_bin() + " -o " + (f.tmp / "base")).exit_code, 0);
  test::write_text(f.tmp / "base/special_tokens_map.json", R"({"bos_token": "<s>"})");
  const auto r = run_cli("merge -m " + (f.tmp / "base") + " --adapter " + (f.tmp / "plain") + " -o " + (f.tmp / "m") +
                         " --dtype bf16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"})
    EXPECT_EQ(test::read_text(f.tmp / "m/" + file), test::read_text(f.tmp / "base/" + file)) << file;
  // --format gguf whatever the name says
  const auto g = run_cli("merge -m " + (f.tmp / "base") + " --adapter " + (f.tmp / "plain") + " -o " + (f.tmp / "m.bin") + " --format gguf");
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_EQ(test::read_text(f.tmp / "m.bin").substr(0, 4), "GGUF");
  const auto same = run_cli("generate -m " + (f.tmp / "m.bin") + kGreedy);
  const auto fly = run_cli("generate -m " + (f.tmp / "base") + kGreedy + " --adapter " + (f.tmp / "plain"));
  EXPECT_EQ(same.out, fly.out);
}

// Each bad input gives one line on stderr naming what is wrong, and exit code 1.
void expect_clean_failure(const std::string& args, const std::vector<std::string>& mentions) {
  const auto r = run_cli(args);
  EXPECT_EQ(r.exit_code, 1) << args << "\nstdout: " << r.out << "\nstderr: " << r.err;
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  for (const std::string& m : mentions) EXPECT_NE(r.err.find(m), std::string::npos) << r.err;
}

TEST(CliAdapterBadInput, ErrorsNameTheProblem) {
  Fixtures f;
  const std::string m = " -m " + test::stories_bin();
  expect_clean_failure("generate" + m + " --adapter " + (f.tmp / "missing"), {"missing", "no such adapter"});
  expect_clean_failure("generate" + m + " --adapter " + (f.tmp / "plain") + ":inf", {"finite"});
  expect_clean_failure("generate" + m + " --adapter " + (f.tmp / "plain") + ":half", {"plain:half", "no such adapter"});
  // an adapter for another base model: the first tensor that does not fit is named
  const std::string qwen = f.tmp / "qwen";
  ASSERT_EQ(test::run_reference("make-hf --out '" + qwen + "' --seed 3").exit_code, 0);
  test::make_fixture(qwen, f.tmp / "qa", "bias", 4);
  expect_clean_failure("generate" + m + " --adapter " + (f.tmp / "qa"),
                       {"adapter_model.safetensors", "base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias", "has none"});
  expect_clean_failure("merge" + m + " -o " + (f.tmp / "out"), {"--adapter"});
  expect_clean_failure("adapter convert " + (f.tmp / "plain") + " -o " + (f.tmp / "x.gguf"), {"-m"});
  expect_clean_failure("adapter convert " + (f.tmp / "dora") + " -o " + (f.tmp / "x.gguf") + m, {"DoRA"});
  expect_clean_failure("adapter info " + test::stories_gguf(), {"general.type"});
  expect_clean_failure("adapter info " + (f.tmp / "plain/adapter_config.json"), {"folder"});
  expect_clean_failure("adapter combine --adapter " + (f.tmp / "plain") + " --adapter " + (f.tmp / "dora") + " -o " + (f.tmp / "c"),
                       {"DoRA"});
  EXPECT_FALSE(std::filesystem::exists(f.tmp / "x.gguf"));
  EXPECT_FALSE(std::filesystem::exists(f.tmp / "c"));
}

}  // namespace
}  // namespace lora
