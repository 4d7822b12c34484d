// Saving, loading and merging LoRA adapters.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "adapters/merge.h"
#include "adapters/peft_io.h"
#include "core/error.h"
#include "formats/safetensors.h"
#include "kernels/cross_entropy.h"
#include "model/random_model.h"
#include "model/transformer.h"
#include "test_util.h"
#include "train/trainable_model.h"

namespace lora {
namespace {

using test::TempDir;

ModelConfig small_config() {
  ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 40;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 50;
  c.max_position_embeddings = 64;
  c.attention_bias = true;
  c.tie_word_embeddings = true;
  return c;
}

const std::vector<int32_t> kTokens = {1, 7, 3, 9, 22, 5, 41, 8, 8, 2};
const std::vector<int32_t> kTargets = {7, 3, 9, 22, 5, 41, 8, 8, 2, kIgnoreIndex};

double transformer_nll(const Model& m) {
  Transformer t(m, 1, 16);
  const Tensor& logits = t.forward(kTokens.data(), 1, int64_t(kTokens.size()), true);
  double s = 0;
  for (size_t i = 0; i < kTargets.size(); ++i)
    if (kTargets[i] != kIgnoreIndex) s += token_nll(logits.f32() + i * 50, 50, kTargets[i]);
  return s;
}

double adapter_nll(TrainableModel& m) {
  return m.evaluate(kTokens.data(), kTargets.data(), 1, int64_t(kTokens.size())).loss_sum;
}

LoraConfig rich_config() {
  LoraConfig c;
  c.r = 4;
  c.lora_alpha = 8;
  c.target_modules = {"all-linear", "embed_tokens", "lm_head"};
  c.init_lora_weights = "false";  // nonzero B: the adapter changes the model
  c.bias = "all";
  c.rank_pattern = {{"down_proj", 2}};
  return c;
}

TEST(AdapterIo, SaveLoadRoundTripIsExactAndPeftShaped) {
  const Model base = random_model(small_config(), 1);
  TrainableModel m = TrainableModel::lora(base, rich_config(), 2);
  TempDir tmp;
  save_peft_adapter(m, tmp / "adapter");

  const auto cfg = nlohmann::json::parse(test::read_text(tmp / "adapter/adapter_config.json"));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["rank_pattern"]["down_proj"], 2);
  EXPECT_EQ(cfg["inference_mode"], true);
  const SafetensorsFile f = SafetensorsFile::open(tmp / "adapter/adapter_model.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const auto* qa = f.find("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  ASSERT_NE(qa, nullptr);
  EXPECT_EQ(qa->shape, (std::vector<int64_t>{4, 32}));
  EXPECT_EQ(f.find("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight")->shape, (std::vector<int64_t>{32, 2}));
  EXPECT_EQ(f.find("base_model.model.model.embed_tokens.lora_embedding_A")->shape, (std::vector<int64_t>{4, 50}));
  // PEFT wraps an adapted Linear as base_layer: its trained bias is saved under that name
  EXPECT_NE(f.find("base_model.model.model.layers.0.self_attn.k_proj.base_layer.bias"), nullptr);

  TrainableModel back = load_peft_adapter(base, tmp / "adapter");
  ASSERT_EQ(back.params().size(), m.params().size());
  for (size_t i = 0; i < m.params().size(); ++i) {
    EXPECT_EQ(back.params()[i].name, m.params()[i].name);
    EXPECT_EQ(std::memcmp(back.params()[i].value->data(), m.params()[i].value->data(), m.params()[i].value->nbytes()), 0);
  }
  EXPECT_EQ(adapter_nll(back), adapter_nll(m));
}

TEST(AdapterIo, MergedModelComputesBasePlusAdapter) {
  const Model base = random_model(small_config(), 3);
  for (bool dora : {false, true}) {
    LoraConfig c = rich_config();
    if (dora) {
      c.use_dora = true;
      c.target_modules = {"all-linear", "embed_tokens"};
    }
    TrainableModel m = TrainableModel::lora(base, c, 4);
    const double with_adapter = adapter_nll(m);
    const Model merged = merged_model(m);
    EXPECT_NEAR(transformer_nll(merged), with_adapter, 1e-4) << (dora ? "DoRA" : "LoRA");
    EXPECT_GT(std::fabs(with_adapter - transformer_nll(base)), 1e-3);  // the adapter does change the model
  }
}

TEST(AdapterIo, PissaIsSavedAsAnEquivalentPlainLora) {
  const Model base = random_model(small_config(), 5);
  LoraConfig c;
  c.r = 3;
  c.lora_alpha = 6;
  c.target_modules = {"q_proj", "up_proj"};
  c.init_lora_weights = "pissa";
  TrainableModel m = TrainableModel::lora(base, c, 6);
  // move away from the initial point so the adapter differs from the base
  for (Param& p : m.params())
    for (int64_t i = 0; i < p.value->numel(); ++i) p.value->f32()[i] *= 1.1f;
  TempDir tmp;
  save_peft_adapter(m, tmp / "a");
  const auto cfg = nlohmann::json::parse(test::read_text(tmp / "a/adapter_config.json"));
  EXPECT_EQ(cfg["r"], 6);
  EXPECT_EQ(cfg["init_lora_weights"], true);
  TrainableModel back = load_peft_adapter(base, tmp / "a");
  EXPECT_NEAR(adapter_nll(back), adapter_nll(m), 1e-4);
}

TEST(AdapterIo, MismatchedAdapterNamesTheTensor) {
  const Model base = random_model(small_config(), 7);
  TrainableModel m = TrainableModel::lora(base, rich_config(), 2);
  TempDir tmp;
  save_peft_adapter(m, tmp / "a");
  ModelConfig other = small_config();
  other.hidden_size = 48;
  other.head_dim = 12;
  const Model wrong = random_model(other, 8);
  try {
    load_peft_adapter(wrong, tmp / "a");
    FAIL() << "loading onto a model of another shape must fail";
  } catch (const Error& e) {
    // the first tensor in model order: the embedding LoRA's B [hidden, r]
    EXPECT_NE(std::string(e.what()).find("'base_model.model.model.embed_tokens.lora_embedding_B' has shape [32, 4], but the "
                                         "base model needs [48, 4]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("adapter_model.safetensors"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lora
