#pragma once
// The data pipeline of `lora train` and `lora eval`: files (several mixed), a validation split or
// file, templating, tokenization, truncation and packing.
#include <cstdint>
#include <string>
#include <vector>

#include "data/chat_template.h"
#include "data/dataset_reader.h"
#include "data/train_example.h"

namespace lora {

class Tokenizer;

struct DatasetOptions {
  std::vector<std::string> data;      // files, or folders with train.jsonl (+ valid.jsonl)
  std::vector<std::string> val_data;  // validation files (else valid.jsonl of a data folder, else val_size)
  double val_size = 0;                // held out of the training records: a fraction (< 1) or a count (>= 1)
  DataFormat format = DataFormat::Auto;
  int64_t max_seq_len = 1024;
  bool train_on_prompt = false;
  bool packing = false;               // training set only
  int64_t max_samples = 0;            // per file, 0: all
  uint64_t seed = 42;                 // for the validation split
};

struct Dataset {
  std::vector<TrainExample> train, eval;
  std::vector<std::string> report;  // human-readable lines: files, formats, counts, truncation
  int64_t train_tokens = 0, train_targets = 0;
};

// Reads, splits, renders and encodes. Every problem is a lora::Error naming the file and line.
Dataset build_dataset(const DatasetOptions& options, const Tokenizer& tok, const ChatTemplate& tmpl);

}  // namespace lora
