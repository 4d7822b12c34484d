// -m ORG/NAME[:QUANT] [--revision R] resolved in the Hugging Face cache, as transformers' offline mode
// and llama.cpp's -hf find a model.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "formats/hf_cache.h"
#include "test_util.h"

namespace lora {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

const std::string kMain = "0123456789abcdef0123456789abcdef01234567";
const std::string kOld = "89abcdef0123456789abcdef0123456789abcdef";

// A cache with two repositories: a GGUF one (two quantizations, "main" and an older commit) and a
// Hugging Face folder one.
void make_cache(const TempDir& cache) {
  const fs::path gguf_repo = fs::path(cache.path()) / "models--acme--tiny-GGUF";
  fs::create_directories(gguf_repo / "refs");
  test::write_text((gguf_repo / "refs" / "main").string(), kMain + "\n");
  for (const std::string& c : {kMain, kOld}) fs::create_directories(gguf_repo / "snapshots" / c);
  fs::copy_file(test::stories_gguf(), gguf_repo / "snapshots" / kMain / "tiny-Q8_0.gguf");
  fs::copy_file(test::stories_gguf(), gguf_repo / "snapshots" / kMain / "tiny-Q4_K_M.gguf");
  fs::copy_file(test::stories_gguf(), gguf_repo / "snapshots" / kOld / "tiny-F32.gguf");
  const fs::path hf_repo = fs::path(cache.path()) / "models--acme--tiny";
  fs::create_directories(hf_repo / "refs");
  fs::create_directories(hf_repo / "snapshots" / kMain);
  test::write_text((hf_repo / "refs" / "main").string(), kMain);
  test::write_text((hf_repo / "snapshots" / kMain / "config.json").string(), "{}");
}

struct CacheEnv {
  explicit CacheEnv(const std::string& dir) { setenv("HF_HUB_CACHE", dir.c_str(), 1); }
  ~CacheEnv() { unsetenv("HF_HUB_CACHE"); }
};

TEST(HfCache, ResolvesNamesRevisionsAndQuantizations) {
  TempDir cache;
  make_cache(cache);
  CacheEnv env(cache.path());
  const fs::path snap = fs::path(cache.path()) / "models--acme--tiny-GGUF" / "snapshots";
  EXPECT_EQ(resolve_model_path("acme/tiny-GGUF:Q4_K_M"), (snap / kMain / "tiny-Q4_K_M.gguf").string());
  EXPECT_EQ(resolve_model_path("acme/tiny-GGUF:q8_0"), (snap / kMain / "tiny-Q8_0.gguf").string());
  EXPECT_EQ(resolve_model_path("acme/tiny-GGUF", kOld), (snap / kOld / "tiny-F32.gguf").string());  // the only one
  EXPECT_EQ(resolve_model_path("acme/tiny"), (fs::path(cache.path()) / "models--acme--tiny" / "snapshots" / kMain).string());
  EXPECT_EQ(resolve_model_path(test::stories_gguf()), test::stories_gguf());  // a path stays a path
  try {
    resolve_model_path("acme/tiny-GGUF");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tiny-Q4_K_M.gguf"), std::string::npos) << e.what();  // says which exist
  }
  try {
    resolve_model_path("acme/absent");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(cache.path() + "/models--acme--absent/refs/main"), std::string::npos) << e.what();
  }
  EXPECT_THROW(resolve_model_path("acme/tiny-GGUF:Q2_K"), Error);
  EXPECT_THROW(resolve_model_path("acme/tiny-GGUF", "v9"), Error);
  EXPECT_THROW(resolve_model_path("no/such/path.gguf"), Error);
}

TEST(HfCache, EveryModelCommandTakesAName) {
  TempDir cache;
  make_cache(cache);
  const std::string env = "HF_HUB_CACHE=" + cache.path() + " ";
  const test::RunResult direct = test::run_cli("generate -m " + test::stories_gguf() + " -p Once -n 8 --temp 0");
  const test::RunResult named = test::run(env + LORA_CLI_PATH + " generate -m acme/tiny-GGUF:Q8_0 -p Once -n 8 --temp 0");
  ASSERT_EQ(named.exit_code, 0) << named.err;
  EXPECT_EQ(named.out, direct.out);
  const test::RunResult rev = test::run(env + LORA_CLI_PATH + " generate -m acme/tiny-GGUF --revision " + kOld +
                                        " -p Once -n 8 --temp 0");
  EXPECT_EQ(rev.out, direct.out) << rev.err;
  const test::RunResult missing = test::run(env + LORA_CLI_PATH + " generate -m acme/absent -p Once -n 8");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("not in the Hugging Face cache"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace lora
