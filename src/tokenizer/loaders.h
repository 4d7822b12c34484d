#pragma once
// One loader per file format; load_tokenizer() picks among them by content.
#include <memory>
#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"

namespace lora {

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& path);  // tokenizer.json (+ config beside it)
std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::string& path, std::string_view bytes);
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, std::string_view bytes);
// Whether the bytes look like a llama2.c tokenizer.bin (checks the first records).
bool looks_like_llama2c_tokenizer(std::string_view bytes);

}  // namespace lora
