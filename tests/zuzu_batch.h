#pragma once
// The learning tests' data and probe, shared: every Zuzu story of tests/data/zuzu_stories.txt as one
// batch (BOS first, padded to the longest, targets the next tokens), the LoRA learning test's fine-tune
// (r 8 alpha 16 in the caller's config; 300 AdamW steps of cosine from 1e-2, 10 warm-up steps, clipping
// at 1), and greedy continuation of a prompt.
#include <algorithm>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cross_entropy.h"
#include "model/sampler.h"
#include "model/transformer.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "train/lr_schedule.h"
#include "train/optimizer.h"
#include "train/trainable_model.h"

namespace lora::test {

struct StoriesBatch {
  std::vector<int32_t> tokens, targets;
  int64_t B = 0, T = 0, n_targets = 0;
};

inline StoriesBatch zuzu_batch(const Tokenizer& tok) {
  std::istringstream lines(read_text(std::string(LORA_TEST_DATA_DIR) + "/zuzu_stories.txt"));
  std::vector<std::vector<int32_t>> stories;
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) stories.push_back(tok.encode_for_model(line));
  StoriesBatch s;
  for (const auto& st : stories) s.T = std::max(s.T, int64_t(st.size()));
  s.B = int64_t(stories.size());
  s.tokens.assign(size_t(s.B * s.T), 0);
  s.targets.assign(size_t(s.B * s.T), kIgnoreIndex);
  for (int64_t b = 0; b < s.B; ++b)
    for (size_t t = 0; t < stories[size_t(b)].size(); ++t) {
      s.tokens[size_t(b * s.T) + t] = stories[size_t(b)][t];
      if (t + 1 < stories[size_t(b)].size()) {
        s.targets[size_t(b * s.T) + t] = stories[size_t(b)][t + 1];
        ++s.n_targets;
      }
    }
  return s;
}

// Runs the learning test's 300 steps; returns the first and the last training loss.
inline std::pair<double, double> fine_tune_on(TrainableModel& m, const StoriesBatch& s, int steps = 300) {
  AdamW opt(m.params(), AdamWConfig{});
  const LrSchedule schedule{"cosine", 1e-2, 10, steps};
  double first = 0, last = 0;
  for (int step = 0; step < steps; ++step) {
    m.zero_grad();
    const auto r = m.forward_backward(s.tokens.data(), s.targets.data(), s.B, s.T, 1.0f / float(s.n_targets));
    const double loss = r.loss_sum / double(r.count);
    if (step == 0) first = loss;
    last = loss;
    clip_grad_norm(m.params(), 1.0);
    opt.step(m.params(), float(schedule.at(step)));
  }
  return {first, last};
}

// The greedy continuation of `prompt` (up to n tokens, stopping at EOS): the decoded whole minus the
// decoded prompt, which keeps the space between them.
inline std::string greedy(const Model& m, const std::string& prompt, int n) {
  std::vector<int32_t> ids = m.tokenizer->encode_for_model(prompt);
  Transformer t(m, 1, int64_t(ids.size()) + n);
  const Tensor* logits = &t.forward(ids.data(), 1, int64_t(ids.size()), false);
  const size_t n_prompt = ids.size();
  for (int i = 0; i < n; ++i) {
    const int32_t next = argmax(logits->f32(), m.config.vocab_size);
    if (next == m.tokenizer->eos_id()) break;
    ids.push_back(next);
    logits = &t.forward(&next, 1, 1, false);
  }
  const std::string all = m.tokenizer->decode(ids, true);
  ids.resize(n_prompt);
  return all.substr(m.tokenizer->decode(ids, true).size());
}

}  // namespace lora::test
