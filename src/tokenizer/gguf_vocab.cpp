#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
namespace lora {
std::unique_ptr<Tokenizer> load_tokenizer_from_gguf(const GGUFFile& g) { fail_format(g.path(), "TODO"); }
}
