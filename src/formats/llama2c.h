#pragma once
// llama2.c legacy checkpoints (what run.c reads): a 7 x int32 header, then fp32 tensors grouped by
// kind across layers. See SPEC 3.4.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "formats/model_loader.h"

namespace lora {

struct Llama2cHeader {
  int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0;
  int32_t vocab_size = 0;  // negative: the classifier is stored separately (not shared)
  int32_t seq_len = 0;

  bool shared_classifier() const { return vocab_size > 0; }
  // The exact size in bytes of a checkpoint with this header.
  uint64_t expected_file_size() const;
};

constexpr size_t kLlama2cHeaderSize = 28;

// The header of `data` if its values are a plausible llama2.c model, else nullopt (used to detect
// the format; says nothing about the file size).
std::optional<Llama2cHeader> parse_llama2c_header(const uint8_t* data, size_t size);

// tokenizer.bin beside the checkpoint, else tok<vocab_size>.bin beside it; "" when neither exists.
std::string find_llama2c_tokenizer(const std::string& path, int64_t vocab_size);

// Weights are views into the mapped file except wq/wk, which are permuted to the rotate_half order.
// The tokenizer is tokenizer.bin beside the file, else tok<vocab_size>.bin (none found: null).
Model load_llama2c(const std::string& path, const LoadOptions& options = {});

}  // namespace lora
