// PEFT adapter folders: adapters written exactly as PEFT's save_pretrained lays them out (by
// tests/python/peft_fixture.py) load here and compute what PyTorch computes with them; what we write
// back is the same tensors and an equivalent config; what TrainableModel saves uses PEFT's names.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "adapter_test_util.h"
#include "adapters/adapter_io.h"
#include "adapters/combine.h"
#include "adapters/peft_io.h"
#include "adapters/trainable_adapter.h"
#include "core/error.h"
#include "formats/model_loader.h"
#include "formats/safetensors.h"
#include "model/random_model.h"

namespace lora {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

Model stories() {
  LoadOptions o;
  o.load_tokenizer = false;
  return load_model(test::stories_bin(), o);
}

// Every tensor of two safetensors files: same names, dtypes, shapes and bytes; and the same metadata.
void expect_same_safetensors(const std::string& a, const std::string& b) {
  const SafetensorsFile fa = SafetensorsFile::open(a), fb = SafetensorsFile::open(b);
  EXPECT_EQ(fa.metadata(), fb.metadata());
  ASSERT_EQ(fa.tensors().size(), fb.tensors().size());
  for (size_t i = 0; i < fa.tensors().size(); ++i) {
    const auto &ta = fa.tensors()[i], &tb = fb.tensors()[i];
    ASSERT_EQ(ta.name, tb.name);
    EXPECT_EQ(ta.dtype_name, tb.dtype_name) << ta.name;
    EXPECT_EQ(ta.shape, tb.shape) << ta.name;
    const Tensor x = fa.load(ta.name), y = fb.load(tb.name);
    ASSERT_EQ(x.nbytes(), y.nbytes()) << ta.name;
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.nbytes()), 0) << ta.name;
  }
}

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(test::read_text(path)); }

TEST(PeftLayout, FixturesRoundTripToIdenticalTensorsAndEquivalentConfig) {
  TempDir tmp;
  for (const char* variant : {"lora", "plain", "dora", "rslora"}) {
    SCOPED_TRACE(variant);
    const std::string in = tmp / (std::string(variant) + "-in"), out = tmp / (std::string(variant) + "-out");
    test::make_fixture(test::stories_bin(), in, variant, 1);
    const Adapter a = read_peft_adapter(in);
    write_peft_adapter(a, out);
    expect_same_safetensors(in + "/adapter_model.safetensors", out + "/adapter_model.safetensors");
    nlohmann::json want = read_json(in + "/adapter_config.json"), got = read_json(out + "/adapter_config.json");
    EXPECT_EQ(got, want);
    // and the config we would write from scratch parses to the same LoraConfig
    const LoraConfig again = LoraConfig::from_peft_json(a.config.to_peft_json(), "x");
    EXPECT_EQ(again.to_peft_json(), a.config.to_peft_json());
  }
}

TEST(PeftLayout, HalfPrecisionAndNamedAdaptersRoundTrip) {
  TempDir tmp;
  // f16 tensors come back as f16, bit for bit; "myname" lives in a sub-folder, as PEFT saves it.
  test::make_fixture(test::stories_bin(), tmp / "in", "plain", 2, "--dtype f16 --adapter-name myname");
  ASSERT_TRUE(fs::exists(tmp / "in/myname/adapter_config.json"));
  const Adapter a = read_peft_adapter(tmp / "in");  // the only sub-folder with an adapter
  EXPECT_EQ(a.name, "myname");
  EXPECT_EQ(a.stored_dtype, DType::F16);
  PeftWriteOptions o;
  o.adapter_name = "myname";
  write_peft_adapter(a, tmp / "out", o);
  expect_same_safetensors(tmp / "in/myname/adapter_model.safetensors", tmp / "out/myname/adapter_model.safetensors");
}

TEST(PeftLayout, StoriesLogitsMatchPyTorchForEveryVariant) {
  const Model base = stories();
  const std::vector<int32_t> tokens = test::sample_tokens(2, 24, 512, 3);
  TempDir tmp;
  for (const char* variant : {"lora", "dora", "rslora"}) {
    SCOPED_TRACE(variant);
    const std::string dir = tmp / variant;
    test::make_fixture(test::stories_bin(), dir, variant, 4);
    AdapterSet set(base);
    set.activate(set.load(dir));
    const std::vector<float> got = test::logits_of(base, &set, tokens, 2, 24);
    const std::vector<float> want = test::oracle_logits(test::stories_bin(), {dir}, tokens, 24);
    const double diff = test::max_abs_diff(got, want);
    std::printf("  %s: max |logit diff| vs PyTorch = %.3g\n", variant, diff);
    EXPECT_LT(diff, 1e-4);
    // the adapter matters: far from the base model's logits
    EXPECT_GT(test::max_abs_diff(test::logits_of(base, nullptr, tokens, 2, 24), want), 0.1);
  }
}

TEST(PeftLayout, BiasAdapterOnQwen2MatchesPyTorch) {
  TempDir tmp;
  const std::string model = tmp / "qwen2";
  ASSERT_EQ(test::run_reference("make-hf --out '" + model + "' --seed 5").exit_code, 0);
  test::make_fixture(model, tmp / "bias", "bias", 6);
  // PEFT's names: the bias of an adapted module sits under base_layer, the others under their own name
  const SafetensorsFile f = SafetensorsFile::open(tmp / "bias/adapter_model.safetensors");
  EXPECT_TRUE(f.has("base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias"));
  EXPECT_TRUE(f.has("base_model.model.model.layers.0.self_attn.k_proj.bias"));

  LoadOptions o;
  o.load_tokenizer = false;
  const Model base = load_model(model, o);
  AdapterSet set(base);
  set.activate(set.load(tmp / "bias"));
  const std::vector<int32_t> tokens = test::sample_tokens(1, 20, 300, 7);
  const double diff = test::max_abs_diff(test::logits_of(base, &set, tokens, 1, 20),
                                         test::oracle_logits(model, {tmp / "bias"}, tokens, 20));
  std::printf("  bias=all on qwen2: max |logit diff| vs PyTorch = %.3g\n", diff);
  EXPECT_LT(diff, 1e-4);

  // Through the training side too: the same adapter in a TrainableModel gives the same loss.
  TrainableModel m = load_peft_adapter(base, tmp / "bias");
  std::vector<int32_t> targets(tokens.begin() + 1, tokens.end());
  targets.push_back(kIgnoreIndex);
  const std::vector<float> logits = test::logits_of(base, &set, tokens, 1, 20);
  double nll = 0;
  for (size_t t = 0; t + 1 < tokens.size(); ++t) nll += token_nll(logits.data() + t * 300, 300, targets[t]);
  EXPECT_NEAR(m.evaluate(tokens.data(), targets.data(), 1, 20).loss_sum, nll, 1e-3);
}

// Phi-3: PEFT adapts the fused qkv_proj and gate_up_proj as one module each (one A, B over the fused rows). Such
// folders, written as PEFT lays them out, compute what PyTorch computes on the fused model; a TrainableModel loaded
// from one has one A per fused module and saves the same keys back; a q_proj on Phi-3 is refused naming the tensor.
TEST(PeftLayout, Phi3FusedModulesMatchPyTorchAndRoundTrip) {
  TempDir tmp;
  const std::string model = tmp / "phi3";
  ASSERT_EQ(test::run_reference("make-hf --family phi3 --out '" + model + "' --seed 4").exit_code, 0);
  LoadOptions o;
  o.load_tokenizer = false;
  const Model base = load_model(model, o);
  const std::vector<int32_t> tokens = test::sample_tokens(1, 20, 300, 7);
  for (const char* variant : {"lora", "dora"}) {
    SCOPED_TRACE(variant);
    const std::string dir = tmp / variant;
    test::make_fixture(model, dir, variant, 6);
    EXPECT_TRUE(SafetensorsFile::open(dir + "/adapter_model.safetensors")
                    .has("base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight"));
    AdapterSet set(base);
    set.activate(set.load(dir));
    const std::vector<float> got = test::logits_of(base, &set, tokens, 1, 20);
    const double diff = test::max_abs_diff(got, test::oracle_logits(model, {dir}, tokens, 20));
    std::printf("  phi3 %s: max |logit diff| vs PyTorch = %.3g\n", variant, diff);
    EXPECT_LT(diff, 1e-4);
    EXPECT_GT(test::max_abs_diff(test::logits_of(base, nullptr, tokens, 1, 20), got), 0.05);

    // a TrainableModel from it computes the same, trains one A per fused module, and writes the fused keys back
    TrainableModel m = load_peft_adapter(base, dir);
    int a_of_qkv = 0;
    for (const Param& p : m.params()) a_of_qkv += p.name.find("layers.0.self_attn.") != std::string::npos &&
                                                 p.name.ends_with("lora_A.weight") && p.name.find("o_proj") == std::string::npos;
    EXPECT_EQ(a_of_qkv, 1);
    std::vector<int32_t> targets(tokens.begin() + 1, tokens.end());
    targets.push_back(kIgnoreIndex);
    double nll = 0;
    for (size_t t = 0; t + 1 < tokens.size(); ++t) nll += token_nll(got.data() + t * 300, 300, targets[t]);
    EXPECT_NEAR(m.evaluate(tokens.data(), targets.data(), 1, 20).loss_sum, nll, 1e-3);
    if (std::string(variant) == "dora") {  // (the lora fixture replaces lm_head, which a TrainableModel trains)
      save_peft_adapter(m, tmp / "back");
      const SafetensorsFile in = SafetensorsFile::open(dir + "/adapter_model.safetensors");
      const SafetensorsFile out = SafetensorsFile::open(tmp / "back/adapter_model.safetensors");
      for (const auto& t : in.tensors()) {
        ASSERT_TRUE(out.has(t.name)) << t.name;
        const Tensor x = in.load(t.name).to(DType::F32), y = out.load(t.name).to(DType::F32);
        ASSERT_EQ(x.shape(), y.shape()) << t.name;
        EXPECT_LT(test::max_abs_diff(std::vector<float>(x.f32(), x.f32() + x.numel()),
                                     std::vector<float>(y.f32(), y.f32() + y.numel())),
                  1e-6)
            << t.name;
      }
      EXPECT_EQ(out.tensors().size(), in.tensors().size());
    }
  }
  // Two Phi-3 adapters combined by SVD as PEFT combines them: on the fused modules (an SVD per part would give the
  // parts different A factors, which no fused module can hold), written back under the fused names
  {
    Adapter a = load_adapter(tmp / "lora", base), b = load_adapter(tmp / "lora", base);
    a.replaced.clear(), b.replaced.clear();
    const Adapter c = combine_adapters({{&a, 1.0f}, {&b, 0.5f}}, CombineMethod::Svd, 3);
    EXPECT_TRUE(c.linears.count("model.layers.0.self_attn.qkv_proj"));
    write_peft_adapter(c, tmp / "combined");
    Adapter back = read_peft_adapter(tmp / "combined");
    EXPECT_EQ(back.linears.at("model.layers.1.mlp.gate_up_proj").b.shape(), (std::vector<int64_t>{192, 3}));
    check_adapter_fits(back, base);  // (and fits the base)
  }
  // PEFT finds no q_proj in Phi-3: an adapter that names one is refused, the tensor named
  Adapter wrong = read_peft_adapter(tmp / "lora");
  wrong.linears["model.layers.0.self_attn.q_proj"] = wrong.linears.at("model.layers.0.self_attn.o_proj");
  try {
    check_adapter_fits(wrong, base);
    ADD_FAILURE() << "a q_proj LoRA on Phi-3 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("self_attn.q_proj.lora_A.weight' is for module 'model.layers.0.self_attn.q_proj', "
                                         "which a phi3 model does not have (it fuses it into "
                                         "model.layers.0.self_attn.qkv_proj)"),
              std::string::npos)
        << e.what();
  }
}

TEST(PeftLayout, TrainableModelSavesPeftNames) {
  ModelConfig c;
  c.hidden_size = 32, c.intermediate_size = 40, c.num_hidden_layers = 2, c.num_attention_heads = 4;
  c.num_key_value_heads = 2, c.head_dim = 8, c.vocab_size = 50, c.attention_bias = true, c.tie_word_embeddings = true;
  c.model_type = "qwen2";
  const Model base = random_model(c, 1);
  LoraConfig lc;
  lc.r = 4;
  lc.target_modules = {"q_proj", "v_proj", "embed_tokens"};
  lc.bias = "all";
  lc.use_dora = true;
  lc.modules_to_save = {"lm_head"};
  lc.init_lora_weights = "false";
  TrainableModel m = TrainableModel::lora(base, lc, 3);
  TempDir tmp;
  save_peft_adapter(m, tmp / "a");
  const SafetensorsFile f = SafetensorsFile::open(tmp / "a/adapter_model.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  for (const char* key : {"base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight",
                          "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight",
                          "base_model.model.model.layers.1.self_attn.q_proj.lora_magnitude_vector",
                          "base_model.model.model.layers.1.self_attn.q_proj.base_layer.bias",  // adapted module
                          "base_model.model.model.layers.1.self_attn.k_proj.bias",             // not adapted
                          "base_model.model.model.embed_tokens.lora_embedding_A",
                          "base_model.model.model.embed_tokens.lora_embedding_B",
                          "base_model.model.model.embed_tokens.base_layer.weight",  // save_embedding_layers
                          "base_model.model.lm_head.weight"})                       // modules_to_save
    EXPECT_TRUE(f.has(key)) << key;
  EXPECT_EQ(f.find("base_model.model.model.layers.1.self_attn.q_proj.lora_magnitude_vector")->shape, (std::vector<int64_t>{32}));
  EXPECT_EQ(f.find("base_model.model.model.embed_tokens.lora_embedding_A")->shape, (std::vector<int64_t>{4, 50}));
  const auto cfg = read_json(tmp / "a/adapter_config.json");
  for (const char* key : {"alpha_pattern", "base_model_name_or_path", "bias", "fan_in_fan_out", "inference_mode",
                          "init_lora_weights", "lora_alpha", "lora_dropout", "modules_to_save", "peft_type", "r",
                          "rank_pattern", "target_modules", "task_type", "use_dora", "use_rslora"})
    EXPECT_TRUE(cfg.contains(key)) << key;
  EXPECT_EQ(cfg["inference_mode"], true);
  EXPECT_EQ(cfg["use_dora"], true);

  // and it loads back to the same model
  TrainableModel back = load_peft_adapter(base, tmp / "a");
  const std::vector<int32_t> tokens = {1, 7, 3, 9, 22, 5, 41, 8}, targets = {7, 3, 9, 22, 5, 41, 8, 2};
  EXPECT_EQ(back.evaluate(tokens.data(), targets.data(), 1, 8).loss_sum, m.evaluate(tokens.data(), targets.data(), 1, 8).loss_sum);
}

// ---------------------------------------------------------------------------------- bad input

// Writes an adapter folder from a config and tensors.
void write_adapter_dir(const std::string& dir, const nlohmann::json& config, const std::map<std::string, Tensor>& tensors) {
  fs::create_directories(dir);
  test::write_text(dir + "/adapter_config.json", config.dump());
  save_safetensors(dir + "/adapter_model.safetensors", tensors, {{"format", "pt"}});
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& mentions) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning " << mentions[0];
  } catch (const Error& e) {
    for (const std::string& m : mentions) EXPECT_NE(std::string(e.what()).find(m), std::string::npos) << e.what();
  }
}

TEST(AdapterBadInput, PeftFoldersGiveClearErrors) {
  TempDir tmp;
  nlohmann::json cfg = {{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 4}, {"target_modules", {"q_proj"}}};
  const std::string q = "base_model.model.model.layers.0.self_attn.q_proj.";
  const Tensor a(DType::F32, {2, 64}), b(DType::F32, {64, 2});

  write_adapter_dir(tmp / "unknown", cfg, {{q + "lora_A.weight", a}, {q + "lora_B.weight", b}, {q + "scales", b}});
  expect_error([&] { read_peft_adapter(tmp / "unknown"); }, {"adapter_model.safetensors", q + "scales", "not one PEFT writes"});

  write_adapter_dir(tmp / "half", cfg, {{q + "lora_A.weight", a}});
  expect_error([&] { read_peft_adapter(tmp / "half"); }, {q + "lora_B.weight", "missing"});

  write_adapter_dir(tmp / "rank", cfg, {{q + "lora_A.weight", Tensor(DType::F32, {3, 64})}, {q + "lora_B.weight", Tensor(DType::F32, {64, 3})}});
  expect_error([&] { read_peft_adapter(tmp / "rank"); }, {q + "lora_A.weight", "rank 3", "rank 2"});

  write_adapter_dir(tmp / "untargeted", cfg,
                    {{q + "lora_A.weight", a}, {q + "lora_B.weight", b},
                     {"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight", a},
                     {"base_model.model.model.layers.0.mlp.up_proj.lora_B.weight", Tensor(DType::F32, {172, 2})}});
  expect_error([&] { read_peft_adapter(tmp / "untargeted"); }, {"up_proj.lora_A.weight", "does not target"});

  write_adapter_dir(tmp / "dora", cfg, {{q + "lora_A.weight", a}, {q + "lora_B.weight", b}, {q + "lora_magnitude_vector", Tensor(DType::F32, {64})}});
  expect_error([&] { read_peft_adapter(tmp / "dora"); }, {"lora_magnitude_vector", "use_dora = false"});

  nlohmann::json ia3 = cfg;
  ia3["peft_type"] = "IA3";
  write_adapter_dir(tmp / "ia3", ia3, {});
  expect_error([&] { read_peft_adapter(tmp / "ia3"); }, {"adapter_config.json", "IA3"});

  nlohmann::json pissa = cfg;
  pissa["init_lora_weights"] = "pissa_niter_4";
  write_adapter_dir(tmp / "pissa", pissa, {});
  expect_error([&] { read_peft_adapter(tmp / "pissa"); }, {"pissa_niter_4", "residual"});

  fs::create_directories(tmp / "bin");
  test::write_text(tmp / "bin/adapter_config.json", cfg.dump());
  test::write_text(tmp / "bin/adapter_model.bin", "PK");
  expect_error([&] { read_peft_adapter(tmp / "bin"); }, {"adapter_model.bin", "safetensors"});

  fs::create_directories(tmp / "badjson");
  test::write_text(tmp / "badjson/adapter_config.json", "{\"r\": ");
  expect_error([&] { read_peft_adapter(tmp / "badjson"); }, {"adapter_config.json", "invalid JSON"});

  write_adapter_dir(tmp / "two/x", cfg, {{q + "lora_A.weight", a}, {q + "lora_B.weight", b}});
  write_adapter_dir(tmp / "two/y", cfg, {{q + "lora_A.weight", a}, {q + "lora_B.weight", b}});
  expect_error([&] { read_peft_adapter(tmp / "two"); }, {"several adapters", "x, y"});

  expect_error([&] { read_adapter(tmp / "nothing-here"); }, {"nothing-here"});
}

TEST(AdapterBadInput, MismatchedBaseNamesTheFirstTensor) {
  TempDir tmp;
  test::make_fixture(test::stories_bin(), tmp / "a", "plain", 1);
  ModelConfig c;  // another shape: hidden 48
  c.hidden_size = 48, c.intermediate_size = 172, c.num_hidden_layers = 5, c.num_attention_heads = 8;
  c.num_key_value_heads = 4, c.head_dim = 6, c.vocab_size = 512, c.tie_word_embeddings = true;
  const Model other = random_model(c, 2);
  // The embedding LoRA comes first in model order: its B is [hidden, r].
  expect_error([&] { load_adapter(tmp / "a", other); },
               {"adapter_model.safetensors", "'base_model.model.model.embed_tokens.lora_embedding_B' has shape [64, 4]",
                "needs [48, 4]"});
  expect_error([&] { load_peft_adapter(other, tmp / "a"); }, {"lora_embedding_B"});

  c.hidden_size = 64, c.head_dim = 8, c.num_hidden_layers = 3;  // fewer layers
  const Model shallow = random_model(c, 3);
  expect_error([&] { load_adapter(tmp / "a", shallow); },
               {"base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight", "layer 3", "has 3 layers"});
}

}  // namespace
}  // namespace lora
