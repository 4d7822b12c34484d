#pragma once
// From samples to token sequences with labels: chat samples through the template (responses trained,
// prompts labelled kIgnoreIndex unless train_on_prompt), text samples whole; truncation to
// max_seq_len and optional packing of short examples into one sequence.
#include <cstdint>
#include <vector>

#include "data/chat_template.h"
#include "data/sample.h"
#include "data/train_example.h"

namespace lora {

class Tokenizer;

// The ids of rendered segments, encoded one by one (special tokens in the text are parsed): BOS first
// when the tokenizer adds one (or the first segment asks for it), BOS/EOS where segments ask for
// them. `response`, when given, receives 1 for each token of a response segment (its EOS included).
std::vector<int32_t> encode_segments(const Tokenizer& tok, const std::vector<Segment>& segments,
                                     std::vector<uint8_t>* response = nullptr);

// One sample, untruncated. A text sample is BOS + text + EOS, all trained.
TrainExample encode_sample(const Tokenizer& tok, const ChatTemplate& tmpl, const Sample& s, bool train_on_prompt);

struct EncodeStats {
  int64_t truncated = 0;       // examples cut to max_seq_len
  int64_t dropped = 0;         // examples with no trained token left after the cut
  int64_t shortest_prompt = 0;  // tokens before the first trained one, over dropped examples
};

// Encodes every sample and cuts it to max_seq_len tokens (the end goes). Examples left with no
// trained token are dropped; when that leaves nothing, lora::Error says so.
std::vector<TrainExample> encode_samples(const Tokenizer& tok, const ChatTemplate& tmpl, const std::vector<Sample>& samples,
                                         int64_t max_seq_len, bool train_on_prompt, EncodeStats* stats = nullptr);

// Packs examples into sequences of at most max_seq_len tokens (first-fit by decreasing length), as
// LLaMA-Factory's packing does: fewer, fuller sequences, no padding. Each example keeps its labels;
// the first token of every packed example is not a target (nothing before it belongs to it).
std::vector<TrainExample> pack_examples(const std::vector<TrainExample>& examples, int64_t max_seq_len);

// Tokens whose label counts as a target (a position t > 0 with labels[t] != kIgnoreIndex).
int64_t trained_token_count(const TrainExample& e);

}  // namespace lora
