// Quantized models in Hugging Face folders with bitsandbytes' layout (formats/bnb.h): written and read
// back bit for bit; checkpoints written the way transformers saves "bnb-4bit" / 8-bit models (by the
// Python reference) load with the reference's dequantized weights; the quantize and init --quantize commands
// and --quantize; clear errors for inconsistent quantization state.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/quant.h"
#include "formats/model_loader.h"
#include "formats/safetensors.h"
#include "formats/weight_names.h"
#include "model/quantize_model.h"
#include "model/transformer.h"
#include "test_util.h"

namespace lora {
namespace {

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// Logits of every position of a fixed batch.
Tensor logits_of(const Model& m) {
  std::vector<int32_t> tokens = {1, 15, 27, 80, 3, 44, 9, 120};
  Transformer t(m, 1, int64_t(tokens.size()));
  return t.forward(tokens.data(), 1, int64_t(tokens.size()), true).clone();
}

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(test::read_text(path)); }

TEST(BnbFolder, QuantizedModelsRoundTripBitForBit) {
  for (const QuantConfig& qc : {QuantConfig{DType::NF4, true}, QuantConfig{DType::FP4, false}, QuantConfig{DType::INT8_ROW, false}}) {
    Model m = load_model(test::stories_bin());
    quantize_linear_weights(m, qc);
    test::TempDir dir;
    save_hf_folder(m, dir / "q");
    const Model back = load_model(dir / "q");
    for (size_t l = 0; l < m.weights.layers.size(); ++l)
      for (int p = 0; p < 7; ++p) {
        const Tensor& a = *linear_weights(m.weights.layers[l])[size_t(p)];
        const Tensor& b = *linear_weights(back.weights.layers[l])[size_t(p)];
        ASSERT_EQ(b.dtype(), qc.type);
        ASSERT_EQ(b.shape(), a.shape());
        ASSERT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0) << l << " " << p;
        ASSERT_TRUE(same_bytes(a.quant()->absmax, b.quant()->absmax));
        ASSERT_EQ(b.quant()->nested, qc.double_quant);
        if (qc.double_quant) {
          ASSERT_TRUE(same_bytes(a.quant()->nested_absmax, b.quant()->nested_absmax));
          ASSERT_EQ(a.quant()->offset, b.quant()->offset);
        }
      }
    const Tensor la = logits_of(m), lb = logits_of(back);
    EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.nbytes()), 0) << quant_type_name(qc.type);
    const nlohmann::json q = read_json(dir / "q/config.json")["quantization_config"];
    EXPECT_EQ(q["quant_method"], "bitsandbytes");
    EXPECT_EQ(q["load_in_4bit"], qc.type != DType::INT8_ROW);
    EXPECT_EQ(q["load_in_8bit"], qc.type == DType::INT8_ROW);
    if (qc.type != DType::INT8_ROW) {
      EXPECT_EQ(q["bnb_4bit_quant_type"], quant_type_name(qc.type));
      EXPECT_EQ(q["bnb_4bit_use_double_quant"], qc.double_quant);
    }
  }
}

// A checkpoint written the way transformers saves a bnb model (bf16 embeddings, norms and biases; the
// projections in bitsandbytes' layout; quantization_config) by the Python reference, from a random
// Qwen2-style folder (GQA, q/k/v biases, untied lm_head).
TEST(BnbFolder, LoadsCheckpointsSavedLikeTransformers) {
  test::TempDir dir;
  test::RunResult r = test::run_reference("make-hf --out " + dir / "hf" + " --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  int case_index = 0;
  for (const std::string args : {"--type nf4", "--type nf4 --no-double-quant", "--type fp4", "--type int8"}) {
    const std::string out = dir / ("bnb" + std::to_string(case_index++));
    r = test::run(test::python() + " " + LORA_PYTHON_DIR + "/bnb_reference.py make-bnb --model " + dir / "hf" + " --out " +
                  out + " " + args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Model m = load_model(out);
    EXPECT_EQ(m.weights.tok_embeddings.dtype(), DType::BF16);
    const SafetensorsFile ref = SafetensorsFile::open(out + "/dequantized.safetensors");
    const std::vector<LayerTensorSpec> specs = layer_tensor_specs(m.config);
    int checked = 0;
    for (size_t l = 0; l < m.weights.layers.size(); ++l)
      for (const LayerTensorSpec& s : specs) {
        if (s.kind != WeightKind::Linear) continue;
        const Tensor& w = m.weights.layers[l].*s.member;
        ASSERT_TRUE(w.quantized()) << args << " " << hf_layer_name(int64_t(l), s);
        EXPECT_TRUE(same_bytes(dequantize(w), ref.load(hf_layer_name(int64_t(l), s)))) << args << " " << hf_layer_name(int64_t(l), s);
        ++checked;
      }
    EXPECT_EQ(checked, 21);
    // the quantized model computes what the same weights dequantized compute (within bf16 rounding)
    Model dense = load_model(out);
    for (LayerWeights& lw : dense.weights.layers)
      for (Tensor* t : linear_weights(lw)) *t = dequantize(*t);
    const Tensor a = logits_of(m), b = logits_of(dense);
    double diff = 0, norm = 0;
    for (int64_t i = 0; i < a.numel(); ++i) {
      diff += std::pow(double(a.f32()[i]) - b.f32()[i], 2);
      norm += std::pow(double(b.f32()[i]), 2);
    }
    EXPECT_LT(std::sqrt(diff / norm), 0.01) << args;
  }
}

// ----------------------------------------------------------------------------- commands

struct SafetensorsKeys {
  std::map<std::string, SafetensorsTensorInfo> info;
  explicit SafetensorsKeys(const std::string& path) {
    const SafetensorsFile f = SafetensorsFile::open(path);
    for (const SafetensorsTensorInfo& t : f.tensors()) info[t.name] = t;
  }
  bool has(const std::string& k) const { return info.count(k) != 0; }
};

TEST(BnbFolder, QuantizeCommandWritesTheBitsandbytesLayout) {
  test::TempDir dir;
  const std::string model = test::stories_bin();
  test::RunResult r = test::run_cli("quantize -m " + model + " -o " + dir / "nf4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("35 linear weights"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("to nf4 with double quantization"), std::string::npos) << r.out;
  SafetensorsKeys k(dir / "nf4/model.safetensors");
  const std::string w = "model.layers.0.self_attn.q_proj.weight";
  ASSERT_TRUE(k.has(w));
  EXPECT_EQ(k.info[w].dtype_name, "U8");
  EXPECT_EQ(k.info[w].shape, (std::vector<int64_t>{64 * 64 / 2, 1}));
  EXPECT_EQ(k.info[w + ".absmax"].dtype_name, "U8");
  EXPECT_EQ(k.info[w + ".nested_absmax"].dtype_name, "F32");
  EXPECT_EQ(k.info[w + ".quant_map"].shape, (std::vector<int64_t>{16}));
  EXPECT_EQ(k.info[w + ".nested_quant_map"].shape, (std::vector<int64_t>{256}));
  EXPECT_TRUE(k.has(w + ".quant_state.bitsandbytes__nf4"));
  EXPECT_EQ(k.info["model.embed_tokens.weight"].dtype_name, "F32");
  EXPECT_TRUE(k.has("model.layers.4.mlp.down_proj.weight.quant_state.bitsandbytes__nf4"));
  const SafetensorsFile f = SafetensorsFile::open(dir / "nf4/model.safetensors");
  const Tensor state = f.load(w + ".quant_state.bitsandbytes__nf4");
  const std::string json(state.data_as<char>(), size_t(state.numel()));
  EXPECT_EQ(json.rfind(R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [64, 64], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": )", 0), 0u) << json;

  // --quantize on load computes exactly what the written folder computes
  const std::string gen = " -p \"Once upon a time\" -n 24 --temp 0";
  const test::RunResult on_load = test::run_cli("generate -m " + model + gen + " --quantize nf4");
  const test::RunResult from_folder = test::run_cli("generate -m " + dir / "nf4" + gen);
  ASSERT_EQ(on_load.exit_code, 0) << on_load.err;
  EXPECT_EQ(on_load.out, from_folder.out);
  const std::string ppl = " -f " + std::string(LORA_TEST_DATA_DIR) + "/tinystory.txt --ctx 128 --json";
  const auto full = nlohmann::json::parse(test::run_cli("perplexity -m " + model + ppl).out);
  const auto q4 = nlohmann::json::parse(test::run_cli("perplexity -m " + model + ppl + " --quantize nf4").out);
  const auto q4f = nlohmann::json::parse(test::run_cli("perplexity -m " + dir / "nf4" + ppl).out);
  EXPECT_EQ(q4["nll"], q4f["nll"]);
  EXPECT_LT(std::fabs(q4["perplexity"].get<double>() / full["perplexity"].get<double>() - 1.0), 0.05);

  // single quantization: fp32 absmax, no nested state
  r = test::run_cli("quantize -m " + model + " -o " + dir / "fp4" + " --type fp4 --no-double-quant");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  SafetensorsKeys k4(dir / "fp4/model.safetensors");
  EXPECT_EQ(k4.info[w + ".absmax"].dtype_name, "F32");
  EXPECT_FALSE(k4.has(w + ".nested_absmax"));
  EXPECT_TRUE(k4.has(w + ".quant_state.bitsandbytes__fp4"));

  // int8: LLM.int8()'s keys
  r = test::run_cli("quantize -m " + model + " -o " + dir / "int8" + " --type int8");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  SafetensorsKeys k8(dir / "int8/model.safetensors");
  EXPECT_EQ(k8.info[w].dtype_name, "I8");
  EXPECT_EQ(k8.info[w].shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(k8.info["model.layers.0.self_attn.q_proj.SCB"].dtype_name, "F32");
  EXPECT_EQ(k8.info["model.layers.0.self_attn.q_proj.weight_format"].dtype_name, "U8");
  EXPECT_EQ(read_json(dir / "int8/config.json")["quantization_config"]["load_in_8bit"], true);

  // convert with an explicit dtype writes every weight in full precision again
  r = test::run_cli("convert -m " + dir / "nf4" + " -o " + dir / "dense" + " --out-dtype f32");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  SafetensorsKeys kd(dir / "dense/model.safetensors");
  EXPECT_EQ(kd.info[w].dtype_name, "F32");
  EXPECT_FALSE(kd.has(w + ".absmax"));
  EXPECT_FALSE(read_json(dir / "dense/config.json").contains("quantization_config"));

  // errors: a bad type, and re-quantizing to another type
  r = test::run_cli("quantize -m " + model + " -o " + dir / "x" + " --type q4_0");
  EXPECT_NE(r.exit_code, 0);
  r = test::run_cli("quantize -m " + dir / "nf4" + " -o " + dir / "y" + " --type fp4");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("already quantized to nf4"), std::string::npos) << r.err;
}

TEST(BnbFolder, InitCreatesQuantizedModels) {
  test::TempDir dir;
  const test::RunResult r =
      test::run_cli("init -o " + dir / "m" + " --tokenizer " + test::stories_tokenizer() +
                    " --hidden-size 128 --intermediate-size 256 --layers 2 --heads 4 --kv-heads 2 --no-tie-embeddings"
                    " --quantize nf4 --dtype bf16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("linear layers in nf4 (4.1"), std::string::npos) << r.out;
  const Model m = load_model(dir / "m");
  EXPECT_EQ(m.weights.layers[1].w_down.dtype(), DType::NF4);
  EXPECT_EQ(m.weights.lm_head.dtype(), DType::BF16);
  EXPECT_EQ(m.config.hidden_size, 128);
  EXPECT_EQ(m.config.vocab_size, 512);
  const QuantSummary q = quant_summary(m);
  EXPECT_EQ(q.tensors, 14);
  EXPECT_LT(q.bits_per_weight, 4.15);  // the loaded code books are the shared ones
  // a published shape; its size options cannot be given as well
  EXPECT_NE(test::run_cli("init -o " + dir / "n" + " --tokenizer " + test::stories_tokenizer() + " --shape llama2-7b --layers 2").exit_code, 0);
  EXPECT_NE(test::run_cli("init -o " + dir / "n" + " --tokenizer " + test::stories_tokenizer() + " --shape llama-9b").exit_code, 0);
}

// ----------------------------------------------------------------------------- bad input

class BnbFolderBadInput : public ::testing::Test {
 protected:
  // stories260K quantized like `qc`, written, and its tensors kept for editing.
  void prepare(const QuantConfig& qc) {
    Model m = load_model(test::stories_bin());
    quantize_linear_weights(m, qc);
    save_hf_folder(m, dir_ / "q");
    const SafetensorsFile f = SafetensorsFile::open(dir_ / "q/model.safetensors");
    for (const SafetensorsTensorInfo& t : f.tensors()) tensors_[t.name] = f.load(t.name).clone();
  }
  // Rewrites the folder's tensors after `edit` and expects loading to fail with `message` in the error.
  void expect_error(const std::function<void(std::map<std::string, Tensor>&)>& edit, const std::string& message) {
    std::map<std::string, Tensor> t = tensors_;
    edit(t);
    save_safetensors(dir_ / "q/model.safetensors", t);
    try {
      load_model(dir_ / "q");
      ADD_FAILURE() << "loaded without error; expected: " << message;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  }
  static Tensor bytes(const std::string& s) {
    Tensor t(DType::U8, {int64_t(s.size())});
    std::memcpy(t.data(), s.data(), s.size());
    return t;
  }
  test::TempDir dir_;
  std::map<std::string, Tensor> tensors_;
  const std::string w_ = "model.layers.0.self_attn.q_proj.weight";
};

TEST_F(BnbFolderBadInput, InconsistentStateIsAClearError) {
  prepare({DType::NF4, true});
  const std::string state = w_ + ".quant_state.bitsandbytes__nf4";
  expect_error([&](auto& t) { t[state] = bytes("{not json"); }, "'" + state + "' does not hold a JSON object");
  expect_error([&](auto& t) { t[state] = bytes(R"({"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [64, 64]})"); },
               "quant_type \"fp4\" does not match the key");
  expect_error([&](auto& t) { t[state] = bytes(R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [32, 64], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.1})"); },
               "has shape [32, 64] (quant_state), expected [64, 64]");
  expect_error([&](auto& t) { t[state] = bytes(R"({"quant_type": "nf4", "blocksize": 0, "dtype": "float32", "shape": [64, 64]})"); },
               "\"blocksize\" must be a positive integer");
  expect_error([&](auto& t) { t[state] = bytes(R"({"quant_type": "nf4", "blocksize": 64, "dtype": "int4", "shape": [64, 64]})"); },
               "\"dtype\" \"int4\" is not float32, bfloat16 or float16");
  expect_error([&](auto& t) { t[state] = bytes(R"({"quant_type": "nf4", "blocksize": 64, "dtype": 4, "shape": [64, 64]})"); },
               "\"dtype\" must be a string, found 4");
  expect_error([&](auto& t) { t[state] = bytes(R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [64, 64], "nested_blocksize": 256, "nested_dtype": ["float32"], "nested_offset": 0.1})"); },
               "\"nested_dtype\" must be a string, found [\"float32\"]");
  expect_error([&](auto& t) { t[state] = bytes(R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [64, 64], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 1e300})"); },
               "\"nested_offset\" must be a number in float range");
  expect_error([&](auto& t) { t.erase(w_ + ".quant_map"); }, "missing tensor '" + w_ + ".quant_map'");
  expect_error([&](auto& t) { t[w_ + ".absmax"] = Tensor(DType::U8, {63}); }, "'" + w_ + ".absmax' has 63 elements, expected 64");
  expect_error([&](auto& t) { t[w_ + ".nested_absmax"] = Tensor(DType::F16, {1}); }, "has dtype f16, expected f32");
  expect_error([&](auto& t) { t[w_] = Tensor(DType::U8, {100, 1}); }, "holds 100 bytes of 4-bit codes, expected 2048");
}

TEST_F(BnbFolderBadInput, Int8LayoutErrors) {
  prepare({DType::INT8_ROW, false});
  const std::string p = "model.layers.0.self_attn.q_proj.";
  expect_error([&](auto& t) {
    Tensor format(DType::U8, {});
    *format.data_as<uint8_t>() = 2;
    t[p + "weight_format"] = format;
  }, "only the row-major layout (0) is supported");
  expect_error([&](auto& t) { t[p + "SCB"] = Tensor(DType::F32, {3}); }, "'" + p + "SCB' has 3 elements, expected 64");
  expect_error([&](auto& t) { t[p + "weight"] = Tensor(DType::U8, {64, 64}); }, "'" + p + "weight' has dtype u8, expected i8");
}

TEST(BnbFolder, UnsupportedQuantMethodIsNamed) {
  test::TempDir dir;
  const Model m = load_model(test::stories_bin());
  save_hf_folder(m, dir / "m");
  nlohmann::json c = read_json(dir / "m/config.json");
  c["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}};
  test::write_text(dir / "m/config.json", c.dump());
  try {
    load_model(dir / "m");
    ADD_FAILURE() << "a GPTQ config loaded";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("quant_method 'gptq' is not supported"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lora
