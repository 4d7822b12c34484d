#pragma once
// From an API request to what the engine runs: the prompt's tokens (a chat rendered through the served
// model's chat template exactly as `lora chat` renders it; a completion's prompt encoded as
// `lora generate` encodes it), the stop strings and tokens, the token budget and the sampling.
#include <memory>

#include "serve/generation.h"
#include "serve/openai_request.h"

namespace lora {
class Tokenizer;
}

namespace lora::serve {

// ApiError 400 for a conversation the template cannot render or a max_tokens above `max_tokens_cap`.
// Without a seed, a random one is drawn.
GenerationJob make_job(const CompletionRequest& request, std::shared_ptr<const ServedModel> model, const Tokenizer& tok,
                       int64_t max_tokens_cap);

}  // namespace lora::serve
