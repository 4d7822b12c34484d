// Training data files: JSON arrays and JSON Lines of alpaca, sharegpt, openai, completions and text
// records, and plain text; the first byte picks the file's extension and the format asked for.
#include "data/dataset_reader.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const char* const kExtensions[] = {".jsonl", ".json", ".txt", ""};
  const std::string name = std::string("data") + kExtensions[data[0] & 3];
  const lora::DataFormat format = static_cast<lora::DataFormat>((data[0] >> 2) % 6);
  const std::string path = lora::fuzz::write_input(name, {reinterpret_cast<const char*>(data) + 1, size - 1});
  lora::fuzz::expect_clean([&] { (void)lora::read_dataset_file(path, format); });
  return 0;
}
