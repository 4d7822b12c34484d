#pragma once
// Reading training data: JSON (an array of records) and JSON Lines files in the formats practitioners
// use, and plain text files.
//
//   alpaca       {"instruction", "input"?, "output", "system"?, "history"?: [[user, assistant], ...]}
//   sharegpt     {"conversations": [{"from": "human"|"gpt"|"system", "value"}], "system"?}
//   openai       {"messages": [{"role": "system"|"user"|"assistant", "content"}]}
//   completions  {"prompt", "completion"}
//   text         {"text"}, or a .txt file with one example per non-empty line
//
// The format of a file is detected from its first record unless given; every record must then be of
// that format. Errors name the file and line (JSON Lines) or the record's first line (JSON).
#include <string>
#include <vector>

#include "data/sample.h"

namespace lora {

enum class DataFormat { Auto, Alpaca, ShareGpt, OpenAI, Completions, Text };

const std::vector<std::string>& data_format_names();  // auto, alpaca, sharegpt, openai, completions, text
DataFormat data_format_from_name(const std::string& name);  // throws lora::Error listing the valid names
std::string data_format_name(DataFormat f);

struct DatasetFile {
  std::string path;
  DataFormat format = DataFormat::Auto;  // as detected (never Auto after reading)
  std::vector<Sample> samples;
};

// Reads one file; an empty file (no records) is an error naming it.
DatasetFile read_dataset_file(const std::string& path, DataFormat format = DataFormat::Auto);

// mlx-lm's data folder convention: DIR/train.jsonl (or .json) and, when present, DIR/valid.jsonl.
// A path that is not a folder is returned as the training file.
struct DataPaths {
  std::vector<std::string> train, valid;
};
DataPaths resolve_data_paths(const std::vector<std::string>& paths);

}  // namespace lora
