#include "serve/job.h"

#include <random>

#include "core/error.h"
#include "data/chat_template.h"
#include "data/encode.h"
#include "serve/api_error.h"
#include "tokenizer/tokenizer.h"

namespace lora::serve {

GenerationJob make_job(const CompletionRequest& r, std::shared_ptr<const ServedModel> model, const Tokenizer& tok,
                       int64_t max_tokens_cap) {
  GenerationJob job;
  if (r.max_tokens && *r.max_tokens > max_tokens_cap)
    throw ApiError(400, "'max_tokens' is " + std::to_string(*r.max_tokens) + ", more than this server's limit of " +
                            std::to_string(max_tokens_cap), "max_tokens");
  job.max_tokens = r.max_tokens.value_or(max_tokens_cap);
  job.stop = r.stop;
  if (r.chat) {
    const ChatTemplate& tmpl = chat_template(model->chat_template);
    try {
      job.prompt = encode_segments(tok, render_chat(tmpl, r.system, r.messages));
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "messages");
    }
    // The template's end-of-turn markers end a reply, as text and, when one is a special token, as that token.
    for (const std::string& s : tmpl.stop) {
      job.stop.push_back(s);
      const std::vector<int32_t> ids = tok.encode(s, true);
      if (ids.size() == 1 && tok.is_special(ids[0])) job.stop_tokens.push_back(ids[0]);
    }
  } else {
    job.prompt = tok.encode_for_model(r.prompt);
    if (job.prompt.empty()) job.prompt.push_back(tok.bos_id() >= 0 ? tok.bos_id() : 0);
    job.continues_prompt = true;
  }
  job.sampling.temperature = r.temperature;
  job.sampling.top_p = r.top_p;
  job.sampling.top_k = r.top_k;
  job.sampling.seed = r.seed ? *r.seed : std::random_device{}();
  job.logprobs = r.logprobs;
  job.ignore_eos = r.ignore_eos;
  job.model = std::move(model);
  return job;
}

}  // namespace lora::serve
