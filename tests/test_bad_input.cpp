// Corrupt and truncated model files: every one must throw lora::FormatError naming the file and the
// problem — never crash, read out of bounds, or allocate what a bogus count asks for.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_model.h"
#include "formats/gguf_writer.h"
#include "formats/hf_folder.h"
#include "formats/llama2c.h"
#include "formats/model_loader.h"
#include "formats/safetensors.h"
#include "model/family.h"
#include "model/random_model.h"
#include "model/transformer.h"
#include "train/trainable_model.h"
#include "formats/gguf_model_writer.h"
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

// The message of what f throws ("" when it does not).
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Runs f, which must throw a FormatError whose message contains every one of `parts`.
void expect_format_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown; expected one mentioning '" << parts.front() << "'";
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected a FormatError, got: " << e.what();
  }
}

template <typename T> void patch(std::string& bytes, size_t at, T v) { std::memcpy(&bytes[at], &v, sizeof v); }

// Must open cleanly or throw FormatError; anything else (a crash under ASan, another exception) fails.
template <typename Open> void expect_clean_failure_or_success(Open open, const std::string& path) {
  try {
    open(path);
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a FormatError: " << e.what();
  }
}

// ---------------------------------------------------------------- GGUF

std::string small_gguf() {
  GGUFWriter w;
  w.set_string("general.architecture", "llama");
  w.set_array("tokenizer.ggml.tokens", GGUFValueType::STRING, {"<unk>", "<s>", "</s>", "hello"});
  w.set_array("tokenizer.ggml.scores", GGUFValueType::FLOAT32, {0.0, -1.0, -2.0, -3.5});
  w.set("u64", GGUFValueType::UINT64, 7);
  Tensor t(DType::F32, {2, 8});
  for (int i = 0; i < 16; ++i) t.f32()[i] = float(i);
  w.add_tensor("w", t);
  w.add_tensor_raw("q", GGMLType::Q8_0, {32}, std::string(34, '\x01'));
  return w.to_bytes();
}

// A quantized tensor that is cut short, claims a type no ggml has, or has rows that are not whole blocks:
// one error naming the file and the tensor, and never a read past the end.
TEST(BadInput, GgufQuantizedTensors) {
  TempDir tmp;
  const std::string name = "blk.0.ffn_up.weight";
  GGUFWriter w;
  w.set_string("general.architecture", "llama");
  w.add_tensor_raw(name, GGMLType(12), {256, 2}, std::string(2 * 144, '\x11'));  // Q4_K, finite scales
  const std::string good = w.to_bytes();
  // The tensor info: name, n_dims (u32), ne (u64 each), type (u32), offset (u64).
  const size_t info = good.find(name) + name.size();
  const size_t ne0_at = info + 4, type_at = info + 4 + 16;
  const std::string path = tmp / "q.gguf";

  test::write_text(path, good);
  EXPECT_EQ(GGUFFile::open(path).load_tensor(name).dtype(), DType::Q4_K);

  std::string bad = good;
  patch<uint32_t>(bad, type_at, 99);
  test::write_text(path, bad);
  expect_format_error([&] { GGUFFile::open(path); }, {"q.gguf", name, "unknown ggml type 99"});

  bad = good;
  patch<uint64_t>(bad, ne0_at, 200);  // 200 values a row: not whole 256-value blocks
  test::write_text(path, bad);
  expect_format_error([&] { GGUFFile::open(path); }, {"q.gguf", name, "not a multiple of the Q4_K block size 256"});

  bad = good;
  patch<uint64_t>(bad, ne0_at, 512);  // twice the blocks the file holds
  test::write_text(path, bad);
  expect_format_error([&] { GGUFFile::open(path); }, {"q.gguf", name});

  test::write_text(path, good.substr(0, good.size() - 100));  // the data cut short
  expect_format_error([&] { GGUFFile::open(path); }, {"q.gguf", "truncated", name});
}

TEST(BadInput, GgufTruncatedAnywhere) {
  TempDir tmp;
  const std::string whole = small_gguf();
  const std::string path = tmp / "cut.gguf";
  test::write_text(path, whole);
  const GGUFFile ok = GGUFFile::open(path);
  const GGUFTensorInfo& last = ok.tensors().back();
  // Padding after the last tensor is optional; every shorter cut loses something.
  const size_t end = ok.data_offset() + last.offset + last.nbytes;
  ASSERT_LT(end, whole.size());
  for (size_t cut = 0; cut < end; ++cut) {
    test::write_text(path, whole.substr(0, cut));
    expect_format_error([&] { GGUFFile::open(path); }, {"cut.gguf", cut < 4 ? "bad magic" : "truncated"});
  }
  test::write_text(path, whole.substr(0, end));
  EXPECT_EQ(GGUFFile::open(path).load_tensor("w").f32()[15], 15.0f);

  const std::string real = test::read_text(test::stories_gguf());
  for (size_t cut : {size_t(0), size_t(9), size_t(30), size_t(700), size_t(5000), size_t(14000), size_t(14176),
                     size_t(600000), real.size() - 1}) {
    test::write_text(path, real.substr(0, cut));
    expect_format_error([&] { GGUFFile::open(path); }, {"cut.gguf", cut < 4 ? "bad magic" : "truncated"});
    expect_format_error([&] { load_model(path, no_tokenizer()); }, {"cut.gguf"});
  }
}

TEST(BadInput, GgufRandomCorruptionNeverCrashes) {
  TempDir tmp;
  const std::string whole = small_gguf();
  const std::string path = tmp / "fuzz.gguf";
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 600; ++iter) {
    std::string b = whole;
    const int flips = 1 + int(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t at = 4 + rng() % (b.size() - 4);
      b[at] = (rng() % 3 == 0) ? char(0xff) : char(rng());
    }
    test::write_text(path, b);
    expect_clean_failure_or_success([](const std::string& p) {
      const GGUFFile g = GGUFFile::open(p);
      for (const GGUFTensorInfo& t : g.tensors())
        if (t.type == 0 || t.type == 8) g.load_tensor(t.name);
    }, path);
  }
}

TEST(BadInput, GgufCorruptHeaderFields) {
  TempDir tmp;
  const std::string real = test::read_text(test::stories_gguf());
  const std::string path = tmp / "bad.gguf";
  auto try_patched = [&](const std::function<void(std::string&)>& edit, const std::vector<std::string>& parts) {
    std::string b = real;
    edit(b);
    test::write_text(path, b);
    std::vector<std::string> all = parts;
    SCOPED_TRACE(all.back());
    all.push_back("bad.gguf");
    expect_format_error([&] { GGUFFile::open(path); }, all);
  };
  const uint64_t huge = uint64_t(1) << 60;
  try_patched([](std::string& b) { b[3] = 'X'; }, {"bad magic"});
  try_patched([](std::string& b) { patch<uint32_t>(b, 4, 1); }, {"version 1"});
  try_patched([](std::string& b) { patch<uint32_t>(b, 4, 0x03000000); }, {"unsupported GGUF version 50331648"});
  try_patched([&](std::string& b) { patch<uint64_t>(b, 8, huge); }, {"claims 1152921504606846976 tensors"});
  try_patched([&](std::string& b) { patch<uint64_t>(b, 16, huge); }, {"claims 1152921504606846976 metadata entries"});
  try_patched([&](std::string& b) { patch<uint64_t>(b, 24, huge); }, {"metadata key #0", "claims 1152921504606846976 bytes"});

  const std::string key = "tokenizer.ggml.tokens";
  const size_t k = real.find(key);
  ASSERT_NE(k, std::string::npos);
  const size_t type_at = k + key.size(), count_at = type_at + 8, first_len_at = count_at + 8;
  try_patched([&](std::string& b) { patch<uint32_t>(b, type_at, 13); }, {"tokenizer.ggml.tokens", "unknown value type 13"});
  try_patched([&](std::string& b) { patch<uint32_t>(b, type_at + 4, 77); }, {"tokenizer.ggml.tokens", "unknown value type 77"});
  try_patched([&](std::string& b) { patch<uint64_t>(b, count_at, huge); },
              {"tokenizer.ggml.tokens", "array of 1152921504606846976 string values"});
  try_patched([&](std::string& b) { patch<uint64_t>(b, first_len_at, huge); },
              {"tokenizer.ggml.tokens", "claims 1152921504606846976 bytes"});

  // Tensor info of token_embd.weight: name, n_dims, ne[2], type, offset.
  const std::string name = "token_embd.weight";
  const size_t t = real.find(name);
  ASSERT_NE(t, std::string::npos);
  const size_t ndims_at = t + name.size(), ne_at = ndims_at + 4, ttype_at = ne_at + 16, off_at = ttype_at + 4;
  try_patched([&](std::string& b) { patch<uint32_t>(b, ndims_at, 5); }, {"token_embd.weight", "n_dims 5"});
  try_patched([&](std::string& b) { patch<uint64_t>(b, ne_at + 8, uint64_t(1) << 40); },
              {"token_embd.weight", "truncated", "runs past the end"});
  try_patched([&](std::string& b) { patch<uint64_t>(b, ne_at, uint64_t(1) << 62); }, {"token_embd.weight", "overflow"});
  try_patched([&](std::string& b) { patch<uint64_t>(b, ne_at, ~uint64_t(0)); }, {"token_embd.weight", "out of range"});
  try_patched([&](std::string& b) { patch<uint32_t>(b, ttype_at, 99); }, {"token_embd.weight", "unknown ggml type 99"});
  try_patched([&](std::string& b) { patch<uint32_t>(b, ttype_at, 12); }, {"token_embd.weight", "ne[0] = 64 is not a multiple of the Q4_K block size 256"});
  try_patched([&](std::string& b) { patch<uint64_t>(b, off_at, 4); }, {"token_embd.weight", "not a multiple of the alignment 32"});
  try_patched([&](std::string& b) { patch<uint64_t>(b, off_at, uint64_t(1) << 50); }, {"token_embd.weight", "runs past the end"});
  // Another tensor's name renamed onto an earlier one.
  const size_t k0 = real.find("blk.0.attn_k.weight");
  try_patched([&](std::string& b) { b[k0 + 11] = 'q'; }, {"duplicate tensor name 'blk.0.attn_q.weight'"});
}

TEST(BadInput, GgufAlignmentMustBeAPowerOfTwo) {
  TempDir tmp;
  GGUFWriter w;
  w.set_u32("general.alignment", 24);
  w.write(tmp / "align.gguf");
  expect_format_error([&] { GGUFFile::open(tmp / "align.gguf"); }, {"align.gguf", "general.alignment must be a power of two"});
}

// A copy of a GGUF (the stories one by default) with edited metadata and tensors, through the writer.
void rewrite_stories(const std::string& out, const std::function<void(GGUFWriter&)>& edit_meta,
                     const std::string& drop_tensor = "", const std::string& from = test::stories_gguf()) {
  const GGUFFile g = GGUFFile::open(from);
  GGUFWriter w;
  for (auto it = g.metadata().begin(); it != g.metadata().end(); ++it) {
    const GGUFValueType type = g.value_type(it.key());
    w.set(it.key(), type, *it, type == GGUFValueType::ARRAY ? g.array_type(it.key()) : type);
  }
  edit_meta(w);
  for (const GGUFTensorInfo& t : g.tensors())
    if (t.name != drop_tensor) w.add_tensor(t.name, g.load_tensor(t.name));
  w.write(out);
}

TEST(BadInput, GgufModelProblems) {
  TempDir tmp;
  rewrite_stories(tmp / "same.gguf", [](GGUFWriter&) {});
  EXPECT_EQ(load_model(tmp / "same.gguf", no_tokenizer()).config.hidden_size, 64);

  rewrite_stories(tmp / "arch.gguf", [](GGUFWriter& w) { w.set_string("general.architecture", "gpt2"); });
  expect_format_error([&] { load_model(tmp / "arch.gguf", no_tokenizer()); },
                      {"arch.gguf", "unsupported GGUF architecture 'gpt2' (supported: llama, qwen2, qwen3, smollm3, gemma2, gemma3, phi3)"});
  rewrite_stories(tmp / "missing.gguf", [](GGUFWriter&) {}, "blk.3.ffn_up.weight");
  expect_format_error([&] { load_model(tmp / "missing.gguf", no_tokenizer()); },
                      {"missing.gguf", "missing tensor 'blk.3.ffn_up.weight'"});
  rewrite_stories(tmp / "shape.gguf", [](GGUFWriter& w) { w.set_u32("llama.feed_forward_length", 100); });
  expect_format_error([&] { load_model(tmp / "shape.gguf", no_tokenizer()); },
                      {"shape.gguf", "tensor 'blk.0.ffn_gate.weight' has shape [172, 64], expected [100, 64]"});
  rewrite_stories(tmp / "heads.gguf", [](GGUFWriter& w) { w.set_u32("llama.attention.head_count_kv", 3); });
  expect_format_error([&] { load_model(tmp / "heads.gguf", no_tokenizer()); },
                      {"heads.gguf", "num_attention_heads (8) must be a multiple of num_key_value_heads (3)"});
  rewrite_stories(tmp / "nokey.gguf", [](GGUFWriter& w) { w.set_string("general.architecture", "qwen2"); });
  expect_format_error([&] { load_model(tmp / "nokey.gguf", no_tokenizer()); },
                      {"nokey.gguf", "missing metadata key 'qwen2.embedding_length'"});
  // a Qwen3 file (its keys all there) without the per-head q/k norm weights the arch has
  rewrite_stories(tmp / "qwen3.gguf", [](GGUFWriter& w) {
    w.set_string("general.architecture", "qwen3");
    for (const auto& [key, v] : {std::pair<const char*, uint32_t>{"embedding_length", 64}, {"feed_forward_length", 172},
                                 {"block_count", 5}, {"attention.head_count", 8}, {"attention.head_count_kv", 4}})
      w.set_u32(std::string("qwen3.") + key, v);
  });
  expect_format_error([&] { load_model(tmp / "qwen3.gguf", no_tokenizer()); },
                      {"qwen3.gguf", "missing tensor 'blk.0.attn_q_norm.weight'"});
}

// A gemma3 GGUF written here, then without its post-MLP norm, without its window, and a model GGUF cannot express.
TEST(BadInput, GgufGemma3Problems) {
  TempDir tmp;
  ASSERT_EQ(test::run_cli("init --arch gemma3 -o " + (tmp / "g") + " --tokenizer " + test::stories_tokenizer() +
                          " --hidden-size 32 --intermediate-size 48 --layers 2 --heads 2 --kv-heads 1 --head-dim 32")
                .exit_code, 0);
  ASSERT_EQ(test::run_cli("convert -m " + (tmp / "g") + " -o " + (tmp / "g.gguf")).exit_code, 0);
  const Model m = load_model(tmp / "g.gguf", no_tokenizer());
  EXPECT_EQ(m.config.model_type, "gemma3_text");
  EXPECT_EQ(m.config.sliding_window, 512);
  EXPECT_EQ(m.config.query_pre_attn_scalar, 32.0f);
  rewrite_stories(tmp / "nopost.gguf", [](GGUFWriter&) {}, "blk.1.post_ffw_norm.weight", tmp / "g.gguf");
  expect_format_error([&] { load_model(tmp / "nopost.gguf", no_tokenizer()); },
                      {"nopost.gguf", "missing tensor 'blk.1.post_ffw_norm.weight'"});
  // a layer count no one checked yet must not size the per-layer list of local/global layers
  rewrite_stories(tmp / "layers.gguf", [](GGUFWriter& w) { w.set_u32("gemma3.block_count", 4000000000u); }, "", tmp / "g.gguf");
  expect_format_error([&] { load_model(tmp / "layers.gguf", no_tokenizer()); },
                      {"layers.gguf", "num_hidden_layers = 4000000000 is out of range (expected 1..4096)"});
  const GGUFFile g = GGUFFile::open(tmp / "g.gguf");
  {  // every key but the window
    GGUFWriter w;
    for (auto it = g.metadata().begin(); it != g.metadata().end(); ++it)
      if (it.key() != "gemma3.attention.sliding_window")
        w.set(it.key(), g.value_type(it.key()), *it,
              g.value_type(it.key()) == GGUFValueType::ARRAY ? g.array_type(it.key()) : g.value_type(it.key()));
    for (const GGUFTensorInfo& t : g.tensors()) w.add_tensor(t.name, g.load_tensor(t.name));
    w.write(tmp / "nowindow.gguf");
  }
  expect_format_error([&] { load_model(tmp / "nowindow.gguf", no_tokenizer()); },
                      {"nowindow.gguf", "missing key 'gemma3.attention.sliding_window'"});
  Model odd = load_model(tmp / "g", no_tokenizer());
  odd.tokenizer = load_model(tmp / "g").tokenizer;
  odd.config.query_pre_attn_scalar = 20.0f;
  const std::string e = error_of([&] { save_gguf_model(odd, tmp / "odd.gguf"); });
  EXPECT_NE(e.find("query_pre_attn_scalar 20 cannot be written as GGUF: llama.cpp scales attention by 32^-1/2"), std::string::npos) << e;
}

// A gemma2 GGUF written here: its caps and window come back, a file without the cap keys takes llama.cpp's defaults
// (50 and 30), one without its window is refused, and a Gemma 2 without caps is a model llama.cpp cannot run.
TEST(BadInput, GgufGemma2Problems) {
  TempDir tmp;
  ASSERT_EQ(test::run_cli("init --arch gemma2 -o " + (tmp / "g") + " --tokenizer " + test::stories_tokenizer() +
                          " --hidden-size 32 --intermediate-size 48 --layers 2 --heads 2 --kv-heads 1 --head-dim 32"
                          " --attn-softcap 7 --final-softcap 9 --sliding-window 64")
                .exit_code, 0);
  ASSERT_EQ(test::run_cli("convert -m " + (tmp / "g") + " -o " + (tmp / "g.gguf")).exit_code, 0);
  const Model m = load_model(tmp / "g.gguf", no_tokenizer());
  EXPECT_EQ(m.config.model_type, "gemma2");
  EXPECT_EQ(m.config.sliding_window, 64);
  EXPECT_EQ(m.config.attn_logit_softcapping, 7.0f);
  EXPECT_EQ(m.config.final_logit_softcapping, 9.0f);
  EXPECT_TRUE(m.config.is_sliding(0) && !m.config.is_sliding(1));
  EXPECT_EQ(m.config.rope_local_base_freq, m.config.rope_theta);
  const GGUFFile g = GGUFFile::open(tmp / "g.gguf");
  const auto without = [&](const std::string& out, const std::vector<std::string>& keys) {
    GGUFWriter w;
    for (auto it = g.metadata().begin(); it != g.metadata().end(); ++it)
      if (std::find(keys.begin(), keys.end(), it.key()) == keys.end())
        w.set(it.key(), g.value_type(it.key()), *it,
              g.value_type(it.key()) == GGUFValueType::ARRAY ? g.array_type(it.key()) : g.value_type(it.key()));
    for (const GGUFTensorInfo& t : g.tensors()) w.add_tensor(t.name, g.load_tensor(t.name));
    w.write(out);
  };
  without(tmp / "nocaps.gguf", {"gemma2.attn_logit_softcapping", "gemma2.final_logit_softcapping"});
  const Model d = load_model(tmp / "nocaps.gguf", no_tokenizer());
  EXPECT_EQ(d.config.attn_logit_softcapping, 50.0f);
  EXPECT_EQ(d.config.final_logit_softcapping, 30.0f);
  without(tmp / "nowindow.gguf", {"gemma2.attention.sliding_window"});
  expect_format_error([&] { load_model(tmp / "nowindow.gguf", no_tokenizer()); },
                      {"nowindow.gguf", "missing key 'gemma2.attention.sliding_window'"});
  Model uncapped = load_model(tmp / "g", no_tokenizer());
  uncapped.tokenizer = load_model(tmp / "g").tokenizer;
  uncapped.config.final_logit_softcapping = 0.0f;
  const std::string e = error_of([&] { save_gguf_model(uncapped, tmp / "uncapped.gguf"); });
  EXPECT_NE(e.find("gemma2 without logit soft-capping cannot be written as GGUF"), std::string::npos) << e;
}

// ---------------------------------------------------------------- safetensors

std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string b(8, '\0');
  patch<uint64_t>(b, 0, header.size());
  return b + header + data;
}

TEST(BadInput, SafetensorsTruncated) {
  TempDir tmp;
  std::map<std::string, Tensor> tensors = {{"a", Tensor(DType::F32, {4, 4})}, {"b", Tensor(DType::BF16, {3})}};
  save_safetensors(tmp / "ok.safetensors", tensors, {{"format", "pt"}});
  const std::string whole = test::read_text(tmp / "ok.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, whole.data(), 8);
  const std::string path = tmp / "cut.safetensors";
  struct Cut {
    size_t at;
    const char* problem;
  };
  for (const Cut& c : {Cut{0, "truncated"}, Cut{5, "truncated"}, Cut{8, "larger than the file"},
                       Cut{8 + n / 2, "larger than the file"}, Cut{size_t(8 + n), "run past the end"},
                       Cut{size_t(8 + n + 10), "run past the end"}, Cut{whole.size() - 1, "run past the end"}}) {
    test::write_text(path, whole.substr(0, c.at));
    expect_format_error([&] { SafetensorsFile::open(path); }, {"cut.safetensors", c.problem});
  }
  // Every cut point is rejected cleanly.
  for (size_t cut = 0; cut < whole.size(); ++cut) {
    test::write_text(path, whole.substr(0, cut));
    expect_format_error([&] { SafetensorsFile::open(path); }, {"cut.safetensors"});
  }
}

TEST(BadInput, SafetensorsCorruptHeader) {
  TempDir tmp;
  const std::string path = tmp / "bad.safetensors";
  auto expect_bad = [&](const std::string& bytes, const std::vector<std::string>& parts) {
    test::write_text(path, bytes);
    std::vector<std::string> all = parts;
    all.push_back("bad.safetensors");
    expect_format_error([&] { SafetensorsFile::open(path); }, all);
  };
  const std::string data(16, '\0');
  std::string huge_len = safetensors_bytes("{}", data);
  patch<uint64_t>(huge_len, 0, uint64_t(1) << 63);
  expect_bad(huge_len, {"header length 9223372036854775808 is larger than the file"});
  expect_bad(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[250],"data_offsets":[0,1000]}})", data),
             {"tensor 'w'", "data_offsets [0, 1000] run past the end of the data section (16 bytes"});
  expect_bad(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
             {"tensor 'w'", "hold 8 bytes, but shape [3] of F32 needs 12"});
  expect_bad(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", data),
             {"tensor 'w'", "end before they begin"});
  expect_bad(safetensors_bytes(R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", data),
             {"tensor 'w'", "unknown dtype 'F33'"});
  expect_bad(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", data),
             {"tensor 'w'", "negative"});
  expect_bad(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}})", data),
             {"tensor 'w'", "too large"});
  expect_bad(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1]}})", data), {"tensor 'w'", "no 'data_offsets'"});
  expect_bad(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", data),
             {"tensor 'w'", "two non-negative integers"});
  expect_bad(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", data), {"not valid JSON"});
  expect_bad(safetensors_bytes(R"([1,2])", data), {"not a JSON object"});
  expect_bad(safetensors_bytes(R"({"__metadata__":{"format":1}})", data), {"__metadata__ value 'format' is not a string"});
}

TEST(BadInput, SafetensorsRandomCorruptionNeverCrashes) {
  TempDir tmp;
  save_safetensors(tmp / "ok.safetensors", {{"a.weight", Tensor(DType::F32, {4, 4})}, {"b", Tensor(DType::I64, {3})}},
                   {{"format", "pt"}});
  const std::string whole = test::read_text(tmp / "ok.safetensors");
  const std::string path = tmp / "fuzz.safetensors";
  std::mt19937 rng(99);
  for (int iter = 0; iter < 500; ++iter) {
    std::string b = whole;
    for (int k = 0; k < 1 + int(rng() % 3); ++k) b[rng() % 120] = char("0123456789[]{}\",:-e"[rng() % 19]);
    test::write_text(path, b);
    expect_clean_failure_or_success([](const std::string& p) {
      const SafetensorsFile f = SafetensorsFile::open(p);
      for (const SafetensorsTensorInfo& t : f.tensors())
        if (t.dtype) f.load(t.name);
    }, path);
  }
}

// ---------------------------------------------------------------- llama2.c

TEST(BadInput, Llama2cTruncatedOrPadded) {
  TempDir tmp;
  const std::string whole = test::read_text(test::stories_bin());
  const std::string path = tmp / "cut.bin";
  test::write_text(path, whole.substr(0, 27));
  expect_format_error([&] { load_llama2c(path, no_tokenizer()); }, {"cut.bin", "truncated", "28-byte header"});
  for (size_t cut : {size_t(28), size_t(1000), size_t(500000), whole.size() - 1}) {
    test::write_text(path, whole.substr(0, cut));
    expect_format_error([&] { load_model(path, no_tokenizer()); },
                        {"cut.bin", fmt::format("truncated: expected 1056540 bytes for this llama2.c header, found {}", cut)});
  }
  test::write_text(path, whole + "xxxx");
  expect_format_error([&] { load_model(path, no_tokenizer()); }, {"cut.bin", "4 unexpected trailing bytes"});
}

TEST(BadInput, Llama2cCorruptHeader) {
  TempDir tmp;
  const std::string whole = test::read_text(test::stories_bin());
  const std::string path = tmp / "bad.bin";
  struct Edit {
    size_t at;
    int32_t value;
    const char* problem;
  };
  for (const Edit& e : {Edit{0, 0, "dim = 0 is out of range"}, Edit{0, -64, "dim = -64"},
                        Edit{8, 1 << 30, "n_layers = 1073741824 is out of range"}, Edit{12, 7, "not a multiple of n_heads 7"},
                        Edit{16, 3, "n_heads 8 is not a multiple of n_kv_heads 3"}, Edit{20, 0, "vocab_size = 0"},
                        Edit{20, 1 << 30, "vocab_size = 1073741824 is out of range"}, Edit{24, -1, "seq_len = -1"}}) {
    std::string b = whole;
    patch<int32_t>(b, e.at, e.value);
    test::write_text(path, b);
    expect_format_error([&] { load_llama2c(path, no_tokenizer()); }, {"bad.bin", "not a valid llama2.c checkpoint header", e.problem});
    expect_format_error([&] { load_model(path, no_tokenizer()); }, {"bad.bin", "not a Hugging Face folder, GGUF or llama2.c checkpoint"});
  }
  // A plausible header whose sizes disagree with the file.
  std::string b = whole;
  patch<int32_t>(b, 4, 173);
  test::write_text(path, b);
  expect_format_error([&] { load_model(path, no_tokenizer()); }, {"bad.bin", "truncated: expected 1060380 bytes for this llama2.c header, found 1056540"});
}

TEST(BadInput, NotAModelAtAll) {
  TempDir tmp;
  test::write_text(tmp / "notes.txt", "hello, this is not a model file at all");
  expect_format_error([&] { load_model(tmp / "notes.txt"); }, {"notes.txt", "not a Hugging Face folder, GGUF or llama2.c checkpoint"});
  expect_format_error([&] { load_model(tmp / "nope.bin"); }, {"nope.bin", "no such file"});
  fs::create_directory(tmp / "empty");
  expect_format_error([&] { load_model(tmp / "empty"); }, {"empty", "no config.json"});
  save_safetensors(tmp / "model.safetensors", {{"w", Tensor(DType::F32, {2})}});
  expect_format_error([&] { load_model(tmp / "model.safetensors"); }, {"model.safetensors", "config.json"});
}

// ---------------------------------------------------------------- Hugging Face folders

class BadHfFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    save_hf_folder(load_llama2c(test::stories_bin(), no_tokenizer()), dir());
    config_ = json::parse(test::read_text(dir() + "/config.json"));
  }
  std::string dir() const { return tmp_ / "model"; }
  void write_config(const json& j) { test::write_text(dir() + "/config.json", j.dump()); }

  TempDir tmp_;
  json config_;
};

TEST_F(BadHfFolder, ConfigMissingRequiredField) {
  for (const char* field : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"}) {
    json j = config_;
    j.erase(field);
    write_config(j);
    expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                        {fmt::format("config.json: missing required field '{}'", field)});
  }
  json j = config_;
  j["hidden_size"] = "64";
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "field 'hidden_size' must be an integer"});
}

TEST_F(BadHfFolder, ConfigUnknownArchitectureOrBroken) {
  json j = config_;
  j["architectures"] = {"GPT2LMHeadModel"};
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"config.json", "unsupported architecture 'GPT2LMHeadModel'",
                       "supported: LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM"});
  j = config_;
  j["model_type"] = "qwen2";
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "does not match model_type 'qwen2'"});
  j = config_;
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "rope_scaling type 'yarn' is not supported"});
  test::write_text(dir() + "/config.json", "{\"hidden_size\": 64,");
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "not valid JSON"});
}

TEST_F(BadHfFolder, TensorShapeMismatchAndMissingTensor) {
  json j = config_;
  j["intermediate_size"] = 100;
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"model.safetensors", "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [172, 64], expected [100, 64]"});
  j = config_;
  j["num_key_value_heads"] = 8;
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"model.safetensors", "tensor 'model.layers.0.self_attn.k_proj.weight' has shape [32, 64], expected [64, 64]"});
  j = config_;
  j["num_hidden_layers"] = 6;
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"model", "missing tensor 'model.layers.5.input_layernorm.weight'"});
}

TEST_F(BadHfFolder, ConfigNumbersPastAFloatAndQuantizationFieldsOfTheWrongType) {
  json j = config_;
  j["rope_theta"] = 1e39;  // held as a float: the cast would be undefined
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "field 'rope_theta' = 1e+39 is out of range"});
  j = config_;
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", -1e300}};
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "field 'factor' = -1e+300 is out of range"});
  j = config_;
  j["quantization_config"] = "bitsandbytes";
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"config.json", "quantization_config must be an object, found \"bitsandbytes\""});
  j["quantization_config"] = {{"quant_method", 4}};
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "quant_method '4' is not supported"});
}

TEST_F(BadHfFolder, FamilyFieldsThatContradictTheWeights) {
  json j = config_;
  j["architectures"] = {"Qwen3ForCausalLM"};
  j["model_type"] = "qwen3";
  write_config(j);  // Llama weights called Qwen3: the head norms are missing
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"model", "missing tensor 'model.layers.0.self_attn.q_norm.weight'"});
  j["head_dim"] = 16;  // 8 heads of 16 do not fit the [64, 64] q_proj
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"model.safetensors", "tensor 'model.layers.0.self_attn.q_proj.weight' has shape [64, 64], expected [128, 64]"});
  j["head_dim"] = 7;
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "head_dim (7) must be even"});
  j.erase("head_dim");
  j["use_sliding_window"] = true;
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"config.json", "'use_sliding_window' is true: sliding-window attention is not supported for qwen3"});
  j = config_;
  j["architectures"] = {"SmolLM3ForCausalLM"};
  j["model_type"] = "smollm3";
  j["no_rope_layers"] = {1, 1, 0};
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"config.json", "field 'no_rope_layers' has 3 entries, expected num_hidden_layers = 5"});
  j["no_rope_layers"] = {1, 1, 2, 1, 1};
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "'no_rope_layers' must hold 0 or 1 per layer, found 2"});
  j.erase("no_rope_layers");  // transformers' default: every 4th layer without RoPE
  write_config(j);
  const Model m = load_model(dir(), no_tokenizer());
  EXPECT_EQ(m.config.no_rope_layers, (std::vector<int64_t>{1, 1, 1, 0, 1}));
}

TEST_F(BadHfFolder, Phi3FieldsThatContradictTheWeightsOrAreNotSupported) {
  json j = config_;
  j["architectures"] = {"Phi3ForCausalLM"};
  j["model_type"] = "phi3";
  write_config(j);  // Llama weights called Phi-3: its checkpoints hold q|k|v as one qkv_proj
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"model", "missing tensor 'model.layers.0.self_attn.qkv_proj.weight'"});
  j["partial_rotary_factor"] = 1.5;
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"config.json", "field 'partial_rotary_factor' must be in (0, 1], found 1.5"});
  j["partial_rotary_factor"] = 0.375;  // 3 of head_dim 8
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"config.json", "the rotary dimension (3 of head_dim 8) must be even and at most head_dim"});
  j.erase("partial_rotary_factor");
  j["rope_scaling"] = {{"type", "longrope"}, {"short_factor", {1.0, 1.0, 1.0}}};
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "rope_scaling longrope needs a list 'long_factor'"});
  j["rope_scaling"]["long_factor"] = {1.0, 2.0, -3.0};
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"config.json", "rope_scaling 'long_factor' must hold positive numbers, found -3.0"});
  j["rope_scaling"]["long_factor"] = {1.0, 2.0, 3.0};  // head_dim 8 has 4 frequencies
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"config.json", "longrope needs head_dim/2 = 4 short_factor and long_factor values, found 3 and 3"});
  j.erase("rope_scaling");
  j["sliding_window"] = 0;
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "'sliding_window' must be positive or null"});
}

TEST_F(BadHfFolder, Gemma3FieldsThatContradictTheWeightsOrAreNotSupported) {
  json j = config_;
  j["architectures"] = {"Gemma3ForCausalLM"};
  j["model_type"] = "gemma3_text";
  write_config(j);  // Llama weights called Gemma 3: no head norms, no sandwich norms
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"model", "missing tensor 'model.layers.0.self_attn.q_norm.weight'"});
  j["model_type"] = "gemma3";  // the multimodal Gemma3ForConditionalGeneration's type
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "unsupported model_type 'gemma3'"});
  j["model_type"] = "gemma3_text";
  j["final_logit_softcapping"] = -30.0;
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"config.json", "field 'final_logit_softcapping' must be positive or null, found -30.0"});
  j["final_logit_softcapping"] = nullptr;
  j["attn_logit_softcapping"] = "50";
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "attn_logit_softcapping"});
  j.erase("attn_logit_softcapping");
  j["hidden_activation"] = "silu";
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"config.json", "hidden_activation \"silu\" is not supported for gemma3_text (only gelu_pytorch_tanh)"});
  j.erase("hidden_activation");  // (Gemma 3 reads hidden_activation only: a Llama config's hidden_act silu is ignored)
  j["layer_types"] = {"sliding_attention", "full_attention"};
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"config.json", "field 'layer_types' has 2 entries, expected num_hidden_layers = 5"});
  j["layer_types"] = {"sliding_attention", "full_attention", "chunked_attention", "full_attention", "full_attention"};
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "found \"chunked_attention\""});
  j.erase("layer_types");
  j["sliding_window"] = 0;
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"config.json", "sliding_window must be positive when layers are sliding_attention, found 0"});
  j["sliding_window"] = 512;
  j["query_pre_attn_scalar"] = -1;
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"config.json", "query_pre_attn_scalar must be positive"});
}

TEST_F(BadHfFolder, Gemma2FieldsThatContradictTheWeights) {
  json j = config_;
  j["architectures"] = {"Gemma2ForCausalLM"};
  j["model_type"] = "gemma2";
  write_config(j);  // Llama weights called Gemma 2: no sandwich norms (and no head norms asked for)
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"model", "missing tensor 'model.layers.0.pre_feedforward_layernorm.weight'"});
  j["attn_logit_softcapping"] = 0;
  write_config(j);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"config.json", "field 'attn_logit_softcapping' must be positive or null, found 0"});
}

TEST_F(BadHfFolder, BrokenWeightsFiles) {
  const std::string st = dir() + "/model.safetensors";
  const std::string whole = test::read_text(st);
  test::write_text(st, whole.substr(0, whole.size() / 2));
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"model.safetensors", "run past the end"});

  save_safetensors(st, {{"model.embed_tokens.weight", Tensor(DType::U8, {512, 64})}});
  expect_format_error([&] { load_model(dir(), no_tokenizer()); },
                      {"model.safetensors", "tensor 'model.embed_tokens.weight' has dtype U8", "quantized"});

  fs::remove(st);
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"model", "no model.safetensors"});
  test::write_text(dir() + "/model.safetensors.index.json",
                   json{{"weight_map", {{"model.embed_tokens.weight", "model-00001-of-00002.safetensors"}}}}.dump());
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"model-00001-of-00002.safetensors", "cannot open"});
  test::write_text(dir() + "/model.safetensors.index.json",
                   json{{"weight_map", {{"model.embed_tokens.weight", "../../etc/passwd"}}}}.dump());
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"index.json", "outside the folder"});
  test::write_text(dir() + "/model.safetensors.index.json", "{}");
  expect_format_error([&] { load_model(dir(), no_tokenizer()); }, {"index.json", "weight_map"});
}

}  // namespace
}  // namespace lora
