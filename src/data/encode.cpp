#include "data/encode.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace lora {

std::vector<int32_t> encode_segments(const Tokenizer& tok, const std::vector<Segment>& segments, std::vector<uint8_t>* response) {
  std::vector<int32_t> ids;
  auto push = [&](int32_t id, bool is_response) {
    ids.push_back(id);
    if (response) response->push_back(is_response);
  };
  if (response) response->clear();
  const bool first_has_bos = !segments.empty() && segments.front().bos;
  if (tok.add_bos() && tok.bos_id() >= 0 && !first_has_bos) push(tok.bos_id(), false);
  for (const Segment& s : segments) {
    if (s.bos && tok.bos_id() >= 0) push(tok.bos_id(), false);
    for (int32_t id : tok.encode(s.text, true)) push(id, s.response);
    if (s.eos && tok.eos_id() >= 0) push(tok.eos_id(), s.response);
  }
  return ids;
}

TrainExample encode_sample(const Tokenizer& tok, const ChatTemplate& tmpl, const Sample& s, bool train_on_prompt) {
  TrainExample e;
  std::vector<uint8_t> response;
  if (s.is_text) {
    e.input_ids = encode_segments(tok, {Segment{s.text, true, false, true}}, &response);
  } else {
    try {
      e.input_ids = encode_segments(tok, render_chat(tmpl, s.system, s.messages), &response);
    } catch (const FormatError&) {
      throw;
    } catch (const Error& err) {
      throw FormatError(s.origin, err.what());
    }
  }
  e.labels.resize(e.input_ids.size());
  for (size_t t = 0; t < e.input_ids.size(); ++t)
    e.labels[t] = train_on_prompt || response[t] ? e.input_ids[t] : kIgnoreIndex;
  return e;
}

int64_t trained_token_count(const TrainExample& e) {
  int64_t n = 0;
  for (size_t t = 1; t < e.labels.size(); ++t) n += e.labels[t] != kIgnoreIndex;
  return n;
}

std::vector<TrainExample> encode_samples(const Tokenizer& tok, const ChatTemplate& tmpl, const std::vector<Sample>& samples,
                                         int64_t max_seq_len, bool train_on_prompt, EncodeStats* stats) {
  if (max_seq_len < 2) fail("max_seq_len must be at least 2, got {}", max_seq_len);
  EncodeStats st;
  std::vector<TrainExample> out;
  out.reserve(samples.size());
  for (const Sample& s : samples) {
    TrainExample e = encode_sample(tok, tmpl, s, train_on_prompt);
    if (int64_t(e.input_ids.size()) > max_seq_len) {
      e.input_ids.resize(size_t(max_seq_len));
      e.labels.resize(size_t(max_seq_len));
      ++st.truncated;
    }
    if (trained_token_count(e) == 0) {
      int64_t prompt = 0;
      const TrainExample full = encode_sample(tok, tmpl, s, train_on_prompt);
      while (prompt + 1 < int64_t(full.labels.size()) && full.labels[size_t(prompt + 1)] == kIgnoreIndex) ++prompt;
      st.shortest_prompt = st.dropped == 0 ? prompt + 1 : std::min(st.shortest_prompt, prompt + 1);
      ++st.dropped;
      continue;
    }
    out.push_back(std::move(e));
  }
  if (out.empty() && !samples.empty())
    fail("nothing to train on: max_seq_len {} cuts away every response token (the shortest prompt is {} tokens); "
         "raise --max-seq-len", max_seq_len, st.shortest_prompt);
  if (stats) *stats = st;
  return out;
}

std::vector<TrainExample> pack_examples(const std::vector<TrainExample>& examples, int64_t max_seq_len) {
  std::vector<size_t> order(examples.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return examples[a].input_ids.size() > examples[b].input_ids.size(); });
  std::vector<TrainExample> bins;
  for (size_t i : order) {
    const TrainExample& e = examples[i];
    auto fits = [&](const TrainExample& bin) { return int64_t(bin.input_ids.size() + e.input_ids.size()) <= max_seq_len; };
    auto it = std::find_if(bins.begin(), bins.end(), fits);
    if (it == bins.end()) {
      bins.push_back(e);
      continue;
    }
    const size_t start = it->input_ids.size();
    it->input_ids.insert(it->input_ids.end(), e.input_ids.begin(), e.input_ids.end());
    it->labels.insert(it->labels.end(), e.labels.begin(), e.labels.end());
    it->labels[start] = kIgnoreIndex;
  }
  return bins;
}

}  // namespace lora
