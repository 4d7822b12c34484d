// Merging adapters into standalone models (Hugging Face folders and GGUF files with their tokenizer) and
// the GGUF model writer itself, checked against llama.cpp's own conversion of stories260K.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "adapter_test_util.h"
#include "adapters/adapter_io.h"
#include "adapters/merge.h"
#include "adapters/peft_io.h"
#include "formats/gguf.h"
#include "formats/gguf_model_writer.h"
#include "formats/model_loader.h"
#include "model/random_model.h"
#include "tokenizer/tokenizer.h"

namespace lora {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

// A LoRA with an embedding LoRA, trained on stories260K and saved as a PEFT folder.
void save_trained_adapter(const Model& base, const std::string& dir) {
  LoraConfig c;
  c.r = 8;
  c.lora_alpha = 16;
  c.target_modules = {"all-linear", "embed_tokens"};
  TrainableModel m = test::train_on_stories(base, c, 25);
  save_peft_adapter(m, dir);
}

TEST(Merge, TrainedAdapterMergedAsHfAndGgufEqualsTheAdapterOnTheFly) {
  const Model base = load_model(test::stories_bin());
  TempDir tmp;
  save_trained_adapter(base, tmp / "adapter");
  AdapterSet set(base);
  set.activate(set.load(tmp / "adapter"));
  const std::vector<int32_t> tokens = test::sample_tokens(2, 48, 512, 41);
  const std::vector<float> on_the_fly = test::logits_of(base, &set, tokens, 2, 48);
  EXPECT_GT(test::max_abs_diff(on_the_fly, test::logits_of(base, nullptr, tokens, 2, 48)), 0.05);  // it learned something

  for (const char* out : {"merged-hf", "merged.gguf"}) {
    SCOPED_TRACE(out);
    const auto r = test::run_cli("merge -m " + test::stories_bin() + " --adapter " + (tmp / "adapter") + " -o " + (tmp / out));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Model merged = load_model(tmp / out);
    ASSERT_TRUE(merged.tokenizer);
    const std::string text = "Once upon a time, Zuzu found a red ball.";
    EXPECT_EQ(merged.tokenizer->encode_for_model(text), base.tokenizer->encode_for_model(text));
    const std::vector<float> l = test::logits_of(merged, nullptr, tokens, 2, 48);
    std::printf("  %s: merged vs on the fly: max |logit diff| = %.3g, over the logit scale = %.3g\n", out,
                test::max_abs_diff(l, on_the_fly), test::scaled_diff(l, on_the_fly));
    EXPECT_LT(test::scaled_diff(l, on_the_fly), 1e-5);
  }
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    EXPECT_TRUE(fs::exists(tmp / "merged-hf/" + f)) << f;
  // The embedding changed but the (tied) head did not: the merged model is untied.
  const auto config = nlohmann::json::parse(test::read_text(tmp / "merged-hf/config.json"));
  EXPECT_EQ(config["tie_word_embeddings"], false);
  const GGUFFile g = GGUFFile::open(tmp / "merged.gguf");
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_NE(g.find_tensor("output.weight"), nullptr);
}

// Gemma 3: the embedding LoRA adds to the scaled embedding unscaled, so its merge divides by the scale; the merged
// model (HF folder, GGUF) computes what the base with the adapter computes.
TEST(Merge, Gemma3AdapterWithAnEmbeddingLoraMergesExactly) {
  TempDir tmp;
  ASSERT_EQ(test::run_cli("init --arch gemma3 -o " + (tmp / "base") + " --tokenizer " + test::stories_tokenizer() +
                          " --hidden-size 48 --intermediate-size 96 --layers 2 --heads 2 --kv-heads 1 --head-dim 32 --seed 4")
                .exit_code, 0);
  const Model base = load_model(tmp / "base");
  ASSERT_GT(base.config.embedding_scale(false), 6.9f);
  save_trained_adapter(base, tmp / "adapter");
  AdapterSet set(base);
  set.activate(set.load(tmp / "adapter"));
  const std::vector<int32_t> tokens = test::sample_tokens(2, 40, 512, 41);
  const std::vector<float> on_the_fly = test::logits_of(base, &set, tokens, 2, 40);
  EXPECT_GT(test::max_abs_diff(on_the_fly, test::logits_of(base, nullptr, tokens, 2, 40)), 0.05);
  for (const char* out : {"merged-hf", "merged.gguf"}) {
    SCOPED_TRACE(out);
    const auto r = test::run_cli("merge -m " + (tmp / "base") + " --adapter " + (tmp / "adapter") + " -o " + (tmp / out));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::vector<float> l = test::logits_of(load_model(tmp / out), nullptr, tokens, 2, 40);
    std::printf("  gemma3 %s: merged vs on the fly, over the logit scale = %.3g\n", out, test::scaled_diff(l, on_the_fly));
    EXPECT_LT(test::scaled_diff(l, on_the_fly), 1e-5);
  }
}

TEST(Merge, DoraAndSeveralAdaptersMergeAsAppliedAndDtypesAreHonoured) {
  const Model base = load_model(test::stories_bin());
  TempDir tmp;
  test::make_fixture(test::stories_bin(), tmp / "dora", "dora", 51);
  test::make_fixture(test::stories_bin(), tmp / "plain", "plain", 52);
  AdapterSet set(base);
  set.activate({{set.load(tmp / "dora"), 1.0f}, {set.load(tmp / "plain"), 0.5f}});
  const std::vector<int32_t> tokens = test::sample_tokens(1, 40, 512, 53);
  const std::vector<float> want = test::logits_of(base, &set, tokens, 1, 40);
  const std::string adapters = " --adapter " + (tmp / "dora") + " --adapter " + (tmp / "plain") + ":0.5";
  ASSERT_EQ(test::run_cli("merge -m " + test::stories_bin() + adapters + " -o " + (tmp / "m")).exit_code, 0);
  EXPECT_LT(test::scaled_diff(test::logits_of(load_model(tmp / "m"), nullptr, tokens, 1, 40), want), 1e-5);

  for (const char* dtype : {"f16", "bf16"}) {
    SCOPED_TRACE(dtype);
    const auto hf = test::run_cli("merge -m " + test::stories_bin() + adapters + " --dtype " + dtype + " -o " + (tmp / dtype));
    ASSERT_EQ(hf.exit_code, 0) << hf.err;
    const auto config = nlohmann::json::parse(test::read_text(tmp / dtype + "/config.json"));
    EXPECT_EQ(config["torch_dtype"], std::string(dtype) == "f16" ? "float16" : "bfloat16");
    const auto gg = test::run_cli("merge -m " + test::stories_bin() + adapters + " --dtype " + dtype + " -o " + (tmp / dtype) + ".gguf");
    ASSERT_EQ(gg.exit_code, 0) << gg.err;
    EXPECT_EQ(GGUFFile::open(tmp / dtype + ".gguf").get_int("general.file_type"), std::string(dtype) == "f16" ? 1 : 32);
    // rounding the weights to 16 bits moves the logits a little, not more
    for (const std::string& path : {tmp / dtype, tmp / dtype + ".gguf"})
      EXPECT_LT(test::max_abs_diff(test::logits_of(load_model(path), nullptr, tokens, 1, 40), want), 0.25) << path;
  }
}

// Our GGUF writer against llama.cpp's own conversion of the same weights (stories260K.gguf): the same
// tensors byte for byte (names, shapes, q/k rows in interleaved order) and the same tokenizer metadata.
TEST(GgufModelWriter, Stories260KIsWrittenAsLlamaCppWroteIt) {
  const Model m = load_model(test::stories_bin());
  TempDir tmp;
  save_gguf_model(m, tmp / "s.gguf");
  const GGUFFile ours = GGUFFile::open(tmp / "s.gguf"), theirs = GGUFFile::open(test::stories_gguf());
  int compared = 0;
  for (const GGUFTensorInfo& t : theirs.tensors()) {
    const GGUFTensorInfo* o = ours.find_tensor(t.name);
    if (!o) {
      EXPECT_EQ(t.name, "output.weight");  // the .bin shares the classifier with the embedding: tied here
      continue;
    }
    EXPECT_EQ(o->ne, t.ne) << t.name;
    EXPECT_EQ(o->type, t.type) << t.name;
    ASSERT_EQ(o->nbytes, t.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(ours.tensor_data(*o), theirs.tensor_data(t), t.nbytes), 0) << t.name;
    ++compared;
  }
  EXPECT_EQ(compared, 47);
  for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"})
    EXPECT_EQ(ours.get_array(key), theirs.get_array(key)) << key;
  for (const char* key : {"tokenizer.ggml.model", "general.architecture"}) EXPECT_EQ(ours.get_string(key), theirs.get_string(key));
  for (const char* key : {"llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
                          "llama.attention.head_count_kv", "llama.block_count", "llama.rope.dimension_count",
                          "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id"})
    EXPECT_EQ(ours.get_int(key), theirs.get_int(key)) << key;
  EXPECT_EQ(ours.get_float("llama.attention.layer_norm_rms_epsilon"), theirs.get_float("llama.attention.layer_norm_rms_epsilon"));

  const Model back = load_model(tmp / "s.gguf");
  const std::vector<int32_t> tokens = test::sample_tokens(1, 32, 512, 61);
  EXPECT_TRUE(test::bit_identical(test::logits_of(back, nullptr, tokens, 1, 32), test::logits_of(m, nullptr, tokens, 1, 32)));
}

TEST(GgufModelWriter, ByteLevelTokenizersAndQwen2RoundTrip) {
  TempDir tmp;
  struct Case {
    const char* tokenizer;
    const char* model_type;
    const char* pre;
  };
  for (const Case& k : {Case{"tokenizers/llama3", "llama", "llama-bpe"}, Case{"tokenizers/qwen3", "qwen2", "qwen2"}}) {
    SCOPED_TRACE(k.tokenizer);
    std::shared_ptr<Tokenizer> tok = load_tokenizer(test::asset(k.tokenizer));
    ModelConfig c;
    c.model_type = k.model_type;
    c.architecture = std::string(k.model_type) == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
    c.attention_bias = c.model_type == "qwen2";
    c.hidden_size = 16, c.intermediate_size = 24, c.num_hidden_layers = 2, c.num_attention_heads = 4;
    c.num_key_value_heads = 2, c.head_dim = 4, c.vocab_size = tok->vocab_size(), c.max_position_embeddings = 64;
    Model m = random_model(c, 7);
    m.tokenizer = tok;
    const std::string path = tmp / (std::string(k.model_type) + ".gguf");
    save_gguf_model(m, path);
    EXPECT_EQ(GGUFFile::open(path).get_string("tokenizer.ggml.pre"), k.pre);
    const Model back = load_model(path);
    ASSERT_TRUE(back.tokenizer);
    for (const std::string text : {"Hello world! 1234 <|begin_of_text|>", "  déjà vu\n\tcode()", "<|im_start|>user\nhi<|im_end|>"})
      EXPECT_EQ(back.tokenizer->encode_for_model(text), tok->encode_for_model(text)) << text;
    const std::vector<int32_t> tokens = {1, 500, 9000, 42, 77, 1234};
    EXPECT_TRUE(test::bit_identical(test::logits_of(back, nullptr, tokens, 1, 6), test::logits_of(m, nullptr, tokens, 1, 6)));
  }
}

TEST(GgufModelWriter, SentencePieceStyleTokenizerJsonBecomesALlamaVocabulary) {
  // Llama 2's tokenizer.model exported as the tokenizer.json a Hugging Face Llama 2 folder carries, then
  // written into GGUF from that tokenizer.json: the same ids as the original SentencePiece model.
  TempDir tmp;
  const std::shared_ptr<Tokenizer> spm = load_tokenizer(test::asset("tokenizers/llama2/tokenizer.model"));
  save_hf_tokenizer(*spm, tmp / "hf");
  std::shared_ptr<Tokenizer> hf = load_tokenizer(tmp / "hf");
  ASSERT_EQ(hf->kind(), "hf-spm-bpe");
  ModelConfig c;
  c.hidden_size = 8, c.intermediate_size = 8, c.num_hidden_layers = 1, c.num_attention_heads = 2;
  c.num_key_value_heads = 2, c.head_dim = 4, c.vocab_size = hf->vocab_size(), c.tie_word_embeddings = true;
  Model m = random_model(c, 3);
  m.tokenizer = hf;
  save_gguf_model(m, tmp / "l2.gguf");
  const Model back = load_model(tmp / "l2.gguf");
  for (const std::string text : {"Hello world", " leading space, and\ttabs\n\nnewlines", "Zürich 東京 🤖 1234567",
                                 "</s> is not special in text", "   "})
    EXPECT_EQ(back.tokenizer->encode_for_model(text), spm->encode_for_model(text)) << text;
}

}  // namespace
}  // namespace lora
