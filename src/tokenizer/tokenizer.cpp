// TEMPORARY: replaced by the tokenizer work (issue 3). Only throws, so nothing silently pretends.
#include "tokenizer/tokenizer.h"

#include "core/error.h"

namespace lora {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) { fail("{}: tokenizers not implemented yet", path); }
std::unique_ptr<Tokenizer> load_tokenizer_from_gguf(const GGUFFile&) { fail("GGUF tokenizers not implemented yet"); }
void save_hf_tokenizer(const Tokenizer&, const std::string& dir) { fail("{}: saving tokenizers not implemented yet", dir); }

}  // namespace lora
