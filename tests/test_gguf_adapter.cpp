// GGUF LoRA adapters in llama.cpp's layout: what llama.cpp's converter would make of a PEFT folder,
// identical logits after PEFT -> GGUF -> load, and clear refusals and errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "adapter_test_util.h"
#include "adapters/adapter_io.h"
#include "adapters/gguf_adapter.h"
#include "adapters/peft_io.h"
#include "adapters/trainable_adapter.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "formats/model_loader.h"
#include "model/random_model.h"

namespace lora {
namespace {

using test::TempDir;

Model load_plain(const std::string& path) {
  LoadOptions o;
  o.load_tokenizer = false;
  return load_model(path, o);
}

void expect_same(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0) << what;
}

TEST(GgufAdapter, PeftToGgufToLoadGivesIdenticalLogitsOnStories) {
  const Model base = load_plain(test::stories_bin());
  TempDir tmp;
  test::make_fixture(test::stories_bin(), tmp / "peft", "plain", 11);
  const Adapter peft = load_adapter(tmp / "peft", base);
  write_gguf_adapter(peft, base, tmp / "a.gguf");

  // What llama.cpp's convert_lora_to_gguf.py makes of the same folder, checked independently in Python.
  const auto check = test::run_fixture("gguf-check --model '" + test::stories_bin() + "' --adapter '" + (tmp / "peft") +
                                       "' --gguf '" + (tmp / "a.gguf") + "'");
  ASSERT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_EQ(nlohmann::json::parse(check.out)["tensors"], 72);  // 35 linears + the embedding, A and B each

  const GGUFFile g = GGUFFile::open(tmp / "a.gguf");
  EXPECT_EQ(g.get_string("general.type"), "adapter");
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.get_string("adapter.type"), "lora");
  EXPECT_EQ(g.get_float("adapter.lora.alpha"), 8.0);
  EXPECT_EQ(g.find_tensor("blk.0.attn_q.weight.lora_a")->ne, (std::vector<int64_t>{64, 4}));
  EXPECT_EQ(g.find_tensor("blk.0.attn_q.weight.lora_b")->ne, (std::vector<int64_t>{4, 64}));
  EXPECT_EQ(g.find_tensor("blk.4.ffn_down.weight.lora_a")->ne, (std::vector<int64_t>{172, 2}));  // rank_pattern
  EXPECT_EQ(g.find_tensor("token_embd.weight.lora_a")->ne, (std::vector<int64_t>{4, 512}));
  EXPECT_EQ(g.find_tensor("token_embd.weight.lora_b")->ne, (std::vector<int64_t>{4, 64}));

  // Back: the very same factors and scalings, hence the very same logits.
  const Adapter back = load_adapter(tmp / "a.gguf", base);
  ASSERT_EQ(back.linears.size(), peft.linears.size());
  for (const auto& [module, f] : peft.linears) {
    const LoraFactors& g2 = back.linears.at(module);
    expect_same(f.a, g2.a, module + " A");
    expect_same(f.b, g2.b, module + " B");
    EXPECT_EQ(f.scaling, g2.scaling) << module;
  }
  expect_same(peft.embedding->a, back.embedding->a, "embedding A");
  expect_same(peft.embedding->b, back.embedding->b, "embedding B");
  EXPECT_EQ(back.config.r, 4);
  EXPECT_EQ(back.config.rank_pattern.size(), 5u);  // the five down_proj of rank 2

  AdapterSet set(base);
  const std::string from_peft = set.add(peft, "peft"), from_gguf = set.add(back, "gguf");
  const std::vector<int32_t> tokens = test::sample_tokens(2, 32, 512, 12);
  set.activate(from_peft);
  const std::vector<float> want = test::logits_of(base, &set, tokens, 2, 32);
  set.activate(from_gguf);
  EXPECT_TRUE(test::bit_identical(test::logits_of(base, &set, tokens, 2, 32), want));

  // On the GGUF base (what llama.cpp would run) with the GGUF adapter: the same logits again.
  const Model gguf_base = load_plain(test::stories_gguf());
  AdapterSet on_gguf(gguf_base);
  on_gguf.activate(on_gguf.load(tmp / "a.gguf"));
  EXPECT_TRUE(test::bit_identical(test::logits_of(gguf_base, &on_gguf, tokens, 2, 32), want));
  // and PyTorch agrees with all of them
  EXPECT_LT(test::max_abs_diff(want, test::oracle_logits(test::stories_bin(), {tmp / "peft"}, tokens, 32)), 1e-4);
}

TEST(GgufAdapter, ScalingsOtherThanAlphaOverRAreFoldedIntoB) {
  const Model base = load_plain(test::stories_bin());
  TempDir tmp;
  const std::vector<int32_t> tokens = test::sample_tokens(1, 32, 512, 13);
  // rsLoRA: alpha/√r; the alpha written is the one that gives every module its scaling as alpha/r.
  test::make_fixture(test::stories_bin(), tmp / "rs", "rslora", 14);
  Adapter rs = load_adapter(tmp / "rs", base);
  write_gguf_adapter(rs, base, tmp / "rs.gguf");
  EXPECT_EQ(GGUFFile::open(tmp / "rs.gguf").get_float("adapter.lora.alpha"), 8.0);  // 4/√4 = 8/4
  // alpha_pattern (v_proj: 12 where the others have 8): v_proj's B carries the factor 12/8.
  test::make_fixture(test::stories_bin(), tmp / "pattern", "lora", 15);
  Adapter pattern = load_adapter(tmp / "pattern", base);
  pattern.replaced.clear();  // modules_to_save has no GGUF form; the rest does
  write_gguf_adapter(pattern, base, tmp / "pattern.gguf");
  EXPECT_EQ(GGUFFile::open(tmp / "pattern.gguf").get_float("adapter.lora.alpha"), 8.0);

  for (Adapter* a : {&rs, &pattern}) {
    AdapterSet set(base);
    const std::string mem = set.add(*a, "mem");
    const std::string file = set.load(a == &rs ? tmp / "rs.gguf" : tmp / "pattern.gguf");
    set.activate(mem);
    const std::vector<float> want = test::logits_of(base, &set, tokens, 1, 32);
    set.activate(file);
    // the fold rounds B·k once in f32: equal to rounding (the random fixtures move logits by several units)
    const double diff = test::max_abs_diff(test::logits_of(base, &set, tokens, 1, 32), want);
    EXPECT_LT(diff, 1e-4) << a->source;
  }
}

TEST(GgufAdapter, TrainableModelAdapterWithEmbeddingLoraExports) {
  // adapter_from_trainable carries PEFT's copy of the base embedding; the export leaves it out, as the converter does
  const Model base = load_plain(test::stories_gguf());
  LoraConfig c;
  c.r = 4, c.lora_alpha = 4, c.target_modules = {"q_proj", "k_proj", "embed_tokens", "lm_head"};
  c.init_lora_weights = "false";
  TrainableModel m = TrainableModel::lora(base, c, 5);
  const Adapter a = adapter_from_trainable(m);
  ASSERT_EQ(a.embedding_layers.size(), 2u);
  TempDir tmp;
  write_gguf_adapter(a, base, tmp / "t.gguf");
  AdapterSet set(base);
  const std::string mem = set.add(a, "mem"), file = set.load(tmp / "t.gguf");
  const std::vector<int32_t> tokens = test::sample_tokens(1, 24, 512, 6);
  set.activate(mem);
  const std::vector<float> want = test::logits_of(base, &set, tokens, 1, 24);
  set.activate(file);
  EXPECT_TRUE(test::bit_identical(test::logits_of(base, &set, tokens, 1, 24), want));
  EXPECT_GT(test::max_abs_diff(want, test::logits_of(base, nullptr, tokens, 1, 24)), 1e-3);
}

TEST(GgufAdapter, RefusesWhatLlamaCppCannotApply) {
  const Model base = load_plain(test::stories_bin());
  TempDir tmp;
  auto refused = [&](const Adapter& a, const Model& m, const std::string& mention) {
    try {
      write_gguf_adapter(a, m, tmp / "x.gguf");
      ADD_FAILURE() << "expected a refusal mentioning " << mention;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(tmp / "x.gguf"));
  };
  test::make_fixture(test::stories_bin(), tmp / "dora", "dora", 1);
  refused(load_adapter(tmp / "dora", base), base, "DoRA");
  test::make_fixture(test::stories_bin(), tmp / "lora", "lora", 1);
  refused(load_adapter(tmp / "lora", base), base, "lm_head");  // modules_to_save
  // a LoRA on lm_head of a tied base: llama.cpp's model has no output.weight
  LoraConfig c;
  c.target_modules = {"lm_head"};
  c.init_lora_weights = "false";
  TrainableModel head = TrainableModel::lora(base, c, 1);
  Adapter a;
  a.linears["lm_head"] = LoraFactors{head.lm_head_lora()->lora_a, head.lm_head_lora()->lora_b, Tensor(), 1.0f};
  refused(a, base, "output.weight");
}

// ---------------------------------------------------------------------------------- bad input

void expect_load_error(const std::string& path, const Model& base, const std::vector<std::string>& mentions) {
  try {
    load_adapter(path, base);
    ADD_FAILURE() << path << ": expected an error";
  } catch (const Error& e) {
    for (const std::string& m : mentions) EXPECT_NE(std::string(e.what()).find(m), std::string::npos) << e.what();
  }
}

GGUFWriter adapter_header(const std::string& arch) {
  GGUFWriter w;
  w.set_string("general.architecture", arch);
  w.set_string("general.type", "adapter");
  w.set_string("adapter.type", "lora");
  w.set_f32("adapter.lora.alpha", 4.0f);
  return w;
}

TEST(AdapterBadInput, GgufAdaptersGiveClearErrors) {
  const Model base = load_plain(test::stories_bin());
  TempDir tmp;
  const Tensor a(DType::F32, {2, 64}), b(DType::F32, {64, 2});

  expect_load_error(test::stories_gguf(), base, {"stories260K.gguf", "general.type", "model file"});

  GGUFWriter arch = adapter_header("qwen2");
  arch.add_tensor("blk.0.attn_q.weight.lora_a", a);
  arch.add_tensor("blk.0.attn_q.weight.lora_b", b);
  arch.write(tmp / "arch.gguf");
  expect_load_error(tmp / "arch.gguf", base, {"arch.gguf", "architecture 'qwen2'", "'llama'"});

  GGUFWriter half = adapter_header("llama");
  half.add_tensor("blk.0.attn_q.weight.lora_a", a);
  half.write(tmp / "half.gguf");
  expect_load_error(tmp / "half.gguf", base, {"half.gguf", "blk.0.attn_q.weight.lora_b", "missing"});

  GGUFWriter transposed = adapter_header("llama");
  transposed.add_tensor("blk.0.attn_q.weight.lora_a", a);
  transposed.add_tensor("blk.0.attn_q.weight.lora_b", Tensor(DType::F32, {2, 64}));
  transposed.write(tmp / "transposed.gguf");
  expect_load_error(tmp / "transposed.gguf", base, {"blk.0.attn_q.weight.lora_b", "transposed"});

  GGUFWriter unknown = adapter_header("llama");
  unknown.add_tensor("blk.0.attn_qkv.weight.lora_a", a);
  unknown.write(tmp / "unknown.gguf");
  expect_load_error(tmp / "unknown.gguf", base, {"blk.0.attn_qkv.weight.lora_a"});

  GGUFWriter suffix = adapter_header("llama");
  suffix.add_tensor("blk.0.attn_q.weight.scale", a);
  suffix.write(tmp / "suffix.gguf");
  expect_load_error(tmp / "suffix.gguf", base, {"blk.0.attn_q.weight.scale", "unexpected suffix"});

  GGUFWriter shape = adapter_header("llama");  // A made for a model with hidden size 48
  shape.add_tensor("blk.0.attn_v.weight.lora_a", Tensor(DType::F32, {2, 48}));
  shape.add_tensor("blk.0.attn_v.weight.lora_b", Tensor(DType::F32, {32, 2}));
  shape.write(tmp / "shape.gguf");
  expect_load_error(tmp / "shape.gguf", base, {"shape.gguf", "'blk.0.attn_v.weight.lora_a' has shape ne [48, 2]", "needs ne [64, 2]"});

  GGUFWriter deep = adapter_header("llama");
  deep.add_tensor("blk.9.attn_v.weight.lora_a", Tensor(DType::F32, {2, 64}));
  deep.add_tensor("blk.9.attn_v.weight.lora_b", Tensor(DType::F32, {32, 2}));
  deep.write(tmp / "deep.gguf");
  expect_load_error(tmp / "deep.gguf", base, {"blk.9.attn_v.weight.lora_a", "layer 9", "5 layers"});

  // truncated at every 7th byte: always an error naming the file, never a crash
  GGUFWriter ok = adapter_header("llama");
  ok.add_tensor("blk.0.attn_q.weight.lora_a", a);
  ok.add_tensor("blk.0.attn_q.weight.lora_b", b);
  const std::string bytes = ok.to_bytes();
  for (size_t cut = 0; cut < bytes.size(); cut += 7) {
    test::write_text(tmp / "cut.gguf", bytes.substr(0, cut));
    EXPECT_THROW(read_gguf_adapter(tmp / "cut.gguf", &base.config), Error) << cut;
  }
}

}  // namespace
}  // namespace lora
