#pragma once
// Helpers the adapter tests share: PEFT fixtures written by tests/python/peft_fixture.py, its PyTorch
// oracle, logits with adapters applied, and a LoRA adapter trained for real on stories260K.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "adapters/adapter_set.h"
#include "kernels/cross_entropy.h"
#include "model/transformer.h"
#include "test_util.h"
#include "zuzu_batch.h"
#include "tokenizer/tokenizer.h"
#include "train/optimizer.h"
#include "train/trainable_model.h"

namespace lora::test {

inline RunResult run_fixture(const std::string& args) {
  return run(python() + " " + LORA_PYTHON_DIR + "/peft_fixture.py " + args);
}

// An adapter folder written exactly as PEFT lays it out (see peft_fixture.py for the variants).
inline void make_fixture(const std::string& model, const std::string& out, const std::string& variant, int seed = 0,
                         const std::string& extra = "") {
  const RunResult r = run_fixture("make --model '" + model + "' --out '" + out + "' --variant " + variant +
                                  " --seed " + std::to_string(seed) + " " + extra);
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

// B sequences of T tokens starting with BOS, deterministic.
inline std::vector<int32_t> sample_tokens(int64_t B, int64_t T, int32_t vocab, uint32_t seed) {
  std::vector<int32_t> t(size_t(B * T));
  uint32_t x = seed * 2654435761u + 12345u;
  for (int64_t i = 0; i < B * T; ++i) {
    x = x * 1664525u + 1013904223u;
    t[size_t(i)] = i % T == 0 ? 1 : int32_t(3 + (x >> 8) % uint32_t(vocab - 3));
  }
  return t;
}

inline std::string tokens_arg(const std::vector<int32_t>& tokens, int64_t T) {
  std::string arg;
  for (size_t i = 0; i < tokens.size(); ++i) arg += (i == 0 ? "" : (i % size_t(T) == 0 ? "," : " ")) + std::to_string(tokens[i]);
  return arg;
}

// The PyTorch oracle's logits [B*T, vocab] for the model with these adapters ("DIR" or "DIR:SCALE").
inline std::vector<float> oracle_logits(const std::string& model, const std::vector<std::string>& adapters,
                                        const std::vector<int32_t>& tokens, int64_t T) {
  TempDir tmp;
  std::string args = "logits --model '" + model + "' --tokens '" + tokens_arg(tokens, T) + "' --out " + (tmp / "l.f32");
  for (const std::string& a : adapters) args += " --adapter '" + a + "'";
  const RunResult r = run_fixture(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::string raw = read_text(tmp / "l.f32");
  std::vector<float> out(raw.size() / 4);
  std::memcpy(out.data(), raw.data(), out.size() * 4);
  return out;
}

// Logits [B*T, vocab] of `m` with `adapters` (may be null) attached, as a copy.
inline std::vector<float> logits_of(const Model& m, const ForwardAdapters* adapters, const std::vector<int32_t>& tokens,
                                    int64_t B, int64_t T) {
  Transformer t(m, B, T);
  t.set_adapters(adapters);
  const Tensor& l = t.forward(tokens.data(), B, T, true);
  return std::vector<float>(l.f32(), l.f32() + l.numel());
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) worst = std::max(worst, double(std::fabs(a[i] - b[i])));
  return worst;
}

// max |a − b| over the scale of the logits (max |b|, at least 1): fp32 noise grows with the logits, and a
// tiny model's logits reach ±20, where 1e-5 absolute is 5 ulps.
inline double scaled_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double scale = 1;
  for (float v : b) scale = std::max(scale, double(std::fabs(v)));
  return max_abs_diff(a, b) / scale;
}

inline bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A LoRA adapter trained on stories260K: `steps` AdamW steps on the Zuzu stories (tests/data), so the
// adapter is a real one (learned values, not random), with the given configuration.
inline TrainableModel train_on_stories(const Model& base, const LoraConfig& config, int steps, uint64_t seed = 7) {
  const StoriesBatch s = zuzu_batch(*base.tokenizer);
  TrainableModel m = TrainableModel::lora(base, config, seed);
  AdamW opt(m.params(), AdamWConfig{});
  for (int step = 0; step < steps; ++step) {
    m.zero_grad();
    m.forward_backward(s.tokens.data(), s.targets.data(), s.B, s.T, 1.0f / float(s.n_targets));
    opt.step(m.params(), 1e-2f);
  }
  return m;
}

}  // namespace lora::test
