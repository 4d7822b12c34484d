#include "cli/common.h"

#include <fmt/format.h>

#include "core/context.h"
#include "core/error.h"
#include "formats/hf_cache.h"
#include "formats/model_loader.h"

namespace lora::cli {

void ModelOptions::add_to(CLI::App* cmd, bool model_required, bool quantize_option) {
  cmd->add_option("-m,--model", model,
                  "Hugging Face folder, .gguf file or llama2.c .bin checkpoint; or ORG/NAME[:QUANT] from the Hugging Face "
                  "cache (offline: HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub)")
      ->required(model_required);
  cmd->add_option("--revision", revision, "with -m ORG/NAME: the branch, tag or commit in the cache (default: main)");
  cmd->add_option("--tokenizer", tokenizer,
                  "tokenizer to use instead of the model's (tokenizer.json, tokenizer.model, llama2.c .bin, .gguf)");
  cmd->add_option("--dtype", dtype, "convert weights on load to f32 or bf16 (default: as stored)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->add_option("-t,--threads", threads, "threads (default: all cores, or LORA_THREADS)");
  if (quantize_option)
    cmd->add_option("--quantize", quantize,
                    "quantize the linear layers on load: nf4 or fp4 (bitsandbytes 4-bit, double quantization) or int8 "
                    "(LLM.int8 rows); embeddings, norms and lm_head keep their dtype")
        ->check(CLI::IsMember({"nf4", "fp4", "int8"}));
}

Model ModelOptions::load(bool require_tokenizer) const {
  set_thread_count(threads);
  LoadOptions opts;
  opts.tokenizer_path = tokenizer;
  if (!dtype.empty()) opts.weight_dtype = dtype_from_name(dtype);
  opts.quantize = quantize;
  Model m = load_model(resolve_model_path(model, revision), opts);
  if (require_tokenizer && !m.tokenizer)
    fail("{}: no tokenizer found with the model; pass one with --tokenizer", model);
  return m;
}

std::string rate(int64_t tokens, double seconds) {
  return seconds > 0 ? fmt::format("{:.1f} tok/s", double(tokens) / seconds) : std::string("- tok/s");
}

}  // namespace lora::cli
