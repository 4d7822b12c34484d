// lora merge: a standalone model with adapters folded in (W + scale·s·B·A), as a Hugging Face folder or a
// GGUF file.
#include <filesystem>

#include <fmt/format.h>

#include "adapters/merge.h"
#include "cli/adapter_options.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
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

void run_merge(const MergeOptions& o) {
  if (o.adapters.empty()) fail("lora merge: give at least one --adapter");
  const std::string format =
      !o.format.empty() ? o.format : std::filesystem::path(o.output).extension() == ".gguf" ? "gguf" : "hf";
  const Model base = o.model.load(/*require_tokenizer=*/format == "gguf");
  const DType stored = base.weights.tok_embeddings.dtype();  // the default: as the base stores its weights
  const DType dtype = o.dtype.empty() ? stored : dtype_from_name(o.dtype);

  if (has_quantized_weights(base))
    fmt::print(stderr, "note: the base model is quantized ({}): the merged model is written in full precision ({}), "
                       "because quantizing W + s·B·A again would round away the adapter's fine detail\n",
               dtype_name(base.weights.layers.at(0).w_up.dtype()), dtype_name(dtype));
  const std::unique_ptr<AdapterSet> set = o.adapters.load(base);
  const Model merged = merged_model(*set);
  if (format == "gguf") {
    save_gguf_model(merged, o.output, dtype);
  } else {
    const bool hf_base = base.source_format == "hf" && o.model.tokenizer.empty();
    save_hf_folder(merged, o.output, dtype, hf_base ? base.source_path : "");
  }
  std::string list;
  for (const AdapterSet::Selection& s : set->active_adapters()) list += fmt::format("{}{} (scale {})", list.empty() ? "" : ", ", s.name, s.scale);
  fmt::print(stderr, "merged {} into {} ({}, {})\n", list, o.output, format, dtype_name(dtype));
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
