// Hugging Face folders: config.json, save/load round trips, shards, dtypes, and load_model dispatch.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/hf_folder.h"
#include "formats/llama2c.h"
#include "formats/model_loader.h"
#include "formats/safetensors.h"
#include "formats/weight_names.h"
#include "model/random_model.h"
#include "test_util.h"

namespace lora {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

LoadOptions no_tokenizer() {
  LoadOptions o;
  o.load_tokenizer = false;
  return o;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

void expect_same_weights(const Model& a, const Model& b) {
  EXPECT_TRUE(same_bytes(a.weights.tok_embeddings, b.weights.tok_embeddings));
  EXPECT_TRUE(same_bytes(a.weights.norm, b.weights.norm));
  EXPECT_TRUE(same_bytes(a.weights.lm_head, b.weights.lm_head));
  ASSERT_EQ(a.weights.layers.size(), b.weights.layers.size());
  for (size_t i = 0; i < a.weights.layers.size(); ++i)
    for (const LayerTensorSpec& s : layer_tensor_specs(a.config))
      EXPECT_TRUE(same_bytes(a.weights.layers[i].*s.member, b.weights.layers[i].*s.member)) << i << " " << s.hf_name;
}

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.to_hf_json(), b.to_hf_json());
}

ModelConfig tiny_qwen2() {
  ModelConfig c;
  c.architecture = "Qwen2ForCausalLM";
  c.model_type = "qwen2";
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 40;
  c.max_position_embeddings = 128;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = 1000000.0f;
  c.attention_bias = true;
  c.tie_word_embeddings = false;
  c.bos_token_id = 3;
  c.eos_token_id = 4;
  return c;
}

TEST(ModelConfig, ParsesQwen2AndLlama3Configs) {
  const json qwen = json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
    "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "tie_word_embeddings": true, "bos_token_id": 151643, "eos_token_id": 151643,
    "rope_scaling": null, "sliding_window": 32768, "torch_dtype": "bfloat16"})");
  const ModelConfig q = ModelConfig::from_hf_json(qwen, "config.json");
  EXPECT_EQ(q.model_type, "qwen2");
  EXPECT_EQ(q.head_dim, 64);
  EXPECT_EQ(q.kv_dim(), 128);
  EXPECT_TRUE(q.attention_bias);  // implied by qwen2
  EXPECT_TRUE(q.tie_word_embeddings);
  EXPECT_EQ(q.rms_norm_eps, 1e-6f);
  EXPECT_EQ(q.rope_theta, 1e6f);
  EXPECT_EQ(q.bos_token_id, 151643);
  EXPECT_TRUE(q.rope_scaling.type.empty());

  const json llama = json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
    "vocab_size": 128256, "rope_theta": 500000.0, "eos_token_id": [128001, 128008, 128009],
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}})");
  const ModelConfig l = ModelConfig::from_hf_json(llama, "config.json");
  EXPECT_EQ(l.model_type, "llama");
  EXPECT_EQ(l.eos_token_id, 128001);
  EXPECT_EQ(l.rope_scaling.type, "llama3");
  EXPECT_EQ(l.rope_scaling.factor, 32.0f);
  EXPECT_EQ(l.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FALSE(l.attention_bias);
  EXPECT_FALSE(l.tie_word_embeddings);
  EXPECT_EQ(l.rms_norm_eps, 1e-6f);  // transformers' LlamaConfig default
  EXPECT_EQ(l.max_position_embeddings, 2048);

  // Written and read back, every field survives; floats are written in their shortest form.
  const json written = l.to_hf_json();
  expect_same_config(ModelConfig::from_hf_json(written, "config.json"), l);
  EXPECT_EQ(written.dump().find("9.99"), std::string::npos);

  const json mistral = json::parse(R"({"model_type": "mistral", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100, "rope_scaling": {"type": "linear", "factor": 2}})");
  const ModelConfig m = ModelConfig::from_hf_json(mistral, "config.json");
  EXPECT_EQ(m.architecture, "MistralForCausalLM");
  EXPECT_EQ(m.num_key_value_heads, 4);  // defaults to num_attention_heads
  EXPECT_EQ(m.rope_scaling.type, "linear");
  EXPECT_EQ(m.rope_scaling.factor, 2.0f);
}

TEST(HfFolder, SaveAndLoadStories260KIsBitExact) {
  TempDir tmp;
  const Model src = load_llama2c(test::stories_bin(), no_tokenizer());
  save_hf_folder(src, tmp / "hf");
  EXPECT_TRUE(fs::exists(tmp / "hf/config.json"));
  EXPECT_TRUE(fs::exists(tmp / "hf/generation_config.json"));
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);  // no temporaries

  const json config = json::parse(test::read_text(tmp / "hf/config.json"));
  EXPECT_EQ(config["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(config["torch_dtype"], "float32");
  EXPECT_EQ(config["tie_word_embeddings"], true);
  EXPECT_EQ(config["rms_norm_eps"], 1e-5);
  const SafetensorsFile st = SafetensorsFile::open(tmp / "hf/model.safetensors");
  EXPECT_EQ(st.metadata().at("format"), "pt");
  EXPECT_FALSE(st.has("lm_head.weight"));  // tied
  EXPECT_TRUE(st.has("model.layers.4.mlp.down_proj.weight"));
  EXPECT_EQ(st.tensors().size(), 2u + 5 * 9);

  const Model back = load_model(tmp / "hf", no_tokenizer());
  EXPECT_EQ(back.source_format, "hf");
  expect_same_config(back.config, src.config);
  expect_same_weights(src, back);
  EXPECT_EQ(back.weights.lm_head.data(), back.weights.tok_embeddings.data());
  EXPECT_EQ(back.tokenizer, nullptr);

  // Saving again over the same folder replaces the files and keeps unrelated ones.
  test::write_text(tmp / "hf/README.md", "notes");
  save_hf_folder(src, tmp / "hf", DType::BF16);
  EXPECT_EQ(test::read_text(tmp / "hf/README.md"), "notes");
  const Model bf = load_model(tmp / "hf", no_tokenizer());
  EXPECT_EQ(json::parse(test::read_text(tmp / "hf/config.json"))["torch_dtype"], "bfloat16");
  EXPECT_TRUE(same_bytes(bf.weights.layers[2].wq, src.weights.layers[2].wq.to(DType::BF16)));
  EXPECT_TRUE(same_bytes(bf.weights.layers[2].attn_norm, src.weights.layers[2].attn_norm.to(DType::BF16).to(DType::F32)));
}

TEST(HfFolder, Qwen2WithBiasesUntiedAndSharded) {
  TempDir tmp;
  const Model src = random_model(tiny_qwen2(), 7);
  save_hf_folder(src, tmp / "one");
  const Model one = load_hf_folder(tmp / "one", no_tokenizer());
  expect_same_config(one.config, src.config);
  expect_same_weights(src, one);
  EXPECT_FALSE(one.weights.layers[1].bk.empty());
  EXPECT_NE(one.weights.lm_head.data(), one.weights.tok_embeddings.data());

  // Split the same tensors over two shards with an index, as large checkpoints are published.
  const SafetensorsFile st = SafetensorsFile::open(tmp / "one/model.safetensors");
  std::map<std::string, Tensor> a, b;
  json weight_map;
  for (const SafetensorsTensorInfo& t : st.tensors()) {
    const bool first = t.name.find("layers.1.") == std::string::npos;
    (first ? a : b)[t.name] = st.load(t.name);
    weight_map[t.name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  fs::create_directory(tmp / "sharded");
  fs::copy_file(tmp / "one/config.json", tmp / "sharded/config.json");
  save_safetensors(tmp / "sharded/model-00001-of-00002.safetensors", a, {{"format", "pt"}});
  save_safetensors(tmp / "sharded/model-00002-of-00002.safetensors", b, {{"format", "pt"}});
  test::write_text(tmp / "sharded/model.safetensors.index.json",
                   json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump());
  expect_same_weights(src, load_model(tmp / "sharded", no_tokenizer()));
}

TEST(HfFolder, F16IsWidenedAndWeightDtypeConverts) {
  TempDir tmp;
  ModelConfig c = tiny_qwen2();
  c.tie_word_embeddings = true;
  const Model src = random_model(c, 11, DType::F16);
  save_hf_folder(src, tmp / "m");
  const Model f32 = load_model(tmp / "m", no_tokenizer());
  EXPECT_EQ(f32.weights.layers[0].w_up.dtype(), DType::F32);
  EXPECT_TRUE(same_bytes(f32.weights.layers[0].w_up, src.weights.layers[0].w_up.to(DType::F32)));

  LoadOptions o = no_tokenizer();
  o.weight_dtype = DType::BF16;
  const Model bf = load_model(tmp / "m", o);
  EXPECT_EQ(bf.weights.layers[0].w_up.dtype(), DType::BF16);
  EXPECT_EQ(bf.weights.tok_embeddings.dtype(), DType::BF16);
  EXPECT_EQ(bf.weights.lm_head.data(), bf.weights.tok_embeddings.data());  // still tied
  EXPECT_EQ(bf.weights.layers[0].bq.dtype(), DType::F32);                 // biases and norms stay f32
  EXPECT_EQ(bf.weights.norm.dtype(), DType::F32);
}

TEST(ModelLoader, DetectsEachFormat) {
  TempDir tmp;
  EXPECT_EQ(detect_model_format(test::stories_bin()), "llama2c");
  EXPECT_EQ(detect_model_format(test::stories_gguf()), "gguf");
  save_hf_folder(load_llama2c(test::stories_bin(), no_tokenizer()), tmp / "hf");
  EXPECT_EQ(detect_model_format(tmp / "hf"), "hf");
  EXPECT_EQ(load_model(test::stories_gguf(), no_tokenizer()).source_format, "gguf");
  EXPECT_EQ(load_model(test::stories_bin(), no_tokenizer()).source_format, "llama2c");
}

TEST(ModelLoader, FailedSaveLeavesNothing) {
  TempDir tmp;
  Model m = random_model(tiny_qwen2(), 3);
  m.weights.layers[1].w_down = Tensor();
  EXPECT_THROW(save_hf_folder(m, tmp / "out"), Error);
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 0);
}

}  // namespace
}  // namespace lora
