// lora merge: a standalone model with adapters folded in (W + scale·s·B·A), as a Hugging Face folder or a
// GGUF file.
#include <filesystem>

#include <fmt/format.h>

#include "adapters/merge.h"
#include "cli/adapter_options.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/ggml_quant.h"
#include "formats/gguf_model_writer.h"
#include "formats/model_loader.h"
#include "model/quantize_model.h"

namespace lora::cli {

namespace {

struct MergeOptions {
  ModelOptions model;  // -m, --tokenizer, --threads (its --dtype is not offered: --dtype is the output's here)
  AdapterOptions adapters;
  std::string output;
  std::string format;  // "", "hf", "gguf"
  std::string dtype;   // "", "f32", "f16", "bf16"
};

// Every weight of `merged` that is ggml-quantized in `base` quantized again to the base's type (the
// adapters changed the merged values, so each is re-encoded from them). Returns how many were.
int64_t requantize_like_base(const Model& base, Model& merged) {
  int64_t n = 0;
  auto again = [&](const Tensor& b, Tensor& m) {
    if (!is_ggml_quant(b.dtype()) || m.dtype() == b.dtype()) return;
    m = ggml_quantize_tensor(m, b.dtype());
    ++n;
  };
  const bool tied = merged.weights.lm_head.data() == merged.weights.tok_embeddings.data();
  again(base.weights.tok_embeddings, merged.weights.tok_embeddings);
  if (tied) merged.weights.lm_head = merged.weights.tok_embeddings;
  else again(base.weights.lm_head, merged.weights.lm_head);
  for (size_t l = 0; l < base.weights.layers.size(); ++l) {
    const auto b = linear_weights(base.weights.layers[l]);
    const auto m = linear_weights(merged.weights.layers[l]);
    for (size_t i = 0; i < b.size(); ++i) again(*b[i], *m[i]);
  }
  return n;
}

void run_merge(const MergeOptions& o) {
  if (o.adapters.empty()) fail("lora merge: give at least one --adapter");
  const std::string format =
      !o.format.empty() ? o.format : std::filesystem::path(o.output).extension() == ".gguf" ? "gguf" : "hf";
  const Model base = o.model.load(/*require_tokenizer=*/format == "gguf");
  const DType first_linear = base.weights.layers.at(0).w_up.dtype();
  const bool ggml_base = is_ggml_quant(first_linear);
  // The default: as the base stores its weights (a quantized GGUF base: re-quantized to its types when
  // written as GGUF, f32 in a Hugging Face folder).
  const DType stored = is_quantized(base.weights.tok_embeddings.dtype()) ? DType::F32 : base.weights.tok_embeddings.dtype();
  const bool requantize = ggml_base && o.dtype.empty() && format == "gguf";
  const DType dtype = o.dtype.empty() ? stored : dtype_from_name(o.dtype);

  if (requantize)
    fmt::print(stderr, "note: the base model is quantized ({}): the merged weights W + s·B·A are quantized again to "
                       "the base's types (pass --dtype f32|f16|bf16 to keep them in full precision)\n",
               dtype_name(first_linear));
  else if (has_quantized_weights(base))
    fmt::print(stderr, "note: the base model is quantized ({}): the merged model is written in full precision ({}), "
                       "because quantizing W + s·B·A again would round away the adapter's fine detail\n",
               dtype_name(first_linear), dtype_name(dtype));
  const std::unique_ptr<AdapterSet> set = o.adapters.load(base);
  Model merged = merged_model(*set);
  std::string written = dtype_name(dtype);
  if (requantize) {
    const int64_t n = requantize_like_base(base, merged);
    save_gguf_model(merged, o.output);
    written = fmt::format("{} tensors re-quantized to the base's types", n);
  } else if (format == "gguf") {
    save_gguf_model(merged, o.output, dtype);
  } else {
    const bool hf_base = base.source_format == "hf" && o.model.tokenizer.empty();
    save_hf_folder(merged, o.output, dtype, hf_base ? base.source_path : "");
  }
  std::string list;
  for (const AdapterSet::Selection& s : set->active_adapters()) list += fmt::format("{}{} (scale {})", list.empty() ? "" : ", ", s.name, s.scale);
  fmt::print(stderr, "merged {} into {} ({}, {})\n", list, o.output, format, written);
}

}  // namespace

void register_merge(CLI::App& app) {
  auto* cmd = app.add_subcommand("merge", "Fold adapters into the model: a standalone Hugging Face folder or GGUF file");
  auto o = std::make_shared<MergeOptions>();
  cmd->add_option("-m,--model", o->model.model, "base model: Hugging Face folder, .gguf file or llama2.c .bin")->required();
  cmd->add_option("--tokenizer", o->model.tokenizer, "tokenizer to use instead of the model's");
  cmd->add_option("-t,--threads", o->model.threads, "threads (default: all cores, or LORA_THREADS)");
  o->adapters.add_to(cmd);
  cmd->add_option("-o,--output", o->output, "output: a folder (hf) or a .gguf file")->required();
  cmd->add_option("--format", o->format, "hf or gguf (default: gguf when the output ends in .gguf, else hf)")
      ->check(CLI::IsMember({"hf", "gguf"}));
  cmd->add_option("--dtype", o->dtype, "weight type written: f32, f16 or bf16 (default: the base model's)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd->callback([o] { run_merge(*o); });
}

}  // namespace lora::cli
