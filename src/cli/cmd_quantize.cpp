// lora quantize: a model's linear layers to bitsandbytes NF4 / FP4 (4-bit) or LLM.int8 rows, written as a
// Hugging Face folder in bitsandbytes' state-dict layout, as transformers saves a "bnb-4bit" model.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "formats/model_loader.h"
#include "model/quantize_model.h"

namespace lora::cli {

namespace {

// Bytes of the seven projection weights of every layer as they are now.
size_t linear_bytes(const Model& m) {
  size_t n = 0;
  for (const LayerWeights& l : m.weights.layers)
    for (const Tensor* t : linear_weights(l)) n += t->nbytes() + (t->quantized() ? t->quant()->nbytes() : 0);
  return n;
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "quantize",
      "Quantize a model's linear layers (bitsandbytes NF4/FP4 with optional double quantization, or LLM.int8 "
      "rows) and write a Hugging Face folder in bitsandbytes' layout (what transformers saves for a bnb model)");
  auto opts = std::make_shared<ModelOptions>();
  auto out = std::make_shared<std::string>();
  auto type = std::make_shared<std::string>("nf4");
  auto no_double_quant = std::make_shared<bool>(false);
  opts->add_to(cmd, /*model_required=*/true, /*quantize_option=*/false);
  cmd->add_option("-o,--output", *out, "output folder (must not exist yet, or be empty)")->required();
  cmd->add_option("--type", *type, "nf4 (QLoRA's NormalFloat), fp4, or int8 (per-row absmax, bitsandbytes 8-bit)")
      ->capture_default_str()
      ->check(CLI::IsMember({"nf4", "fp4", "int8"}));
  cmd->add_flag("--no-double-quant", *no_double_quant,
                "keep the 4-bit absmax values in fp32 (4.5 bits/weight) instead of quantizing them to 8 bits (4.127)");
  cmd->callback([opts, out, type, no_double_quant] {
    Model m = opts->load(false);
    const size_t before = linear_bytes(m);
    const QuantConfig config{quant_type_from_name(*type), !*no_double_quant && *type != "int8"};
    quantize_linear_weights(m, config);
    const QuantSummary q = quant_summary(m);
    save_hf_folder(m, *out);
    fmt::print("quantized {} linear weights ({} parameters) to {}{}: {:.3f} bits/weight, {:.1f} MiB -> {:.1f} MiB; "
               "embeddings, norms and lm_head kept in {}\n",
               q.tensors, q.elements, *type, config.double_quant ? " with double quantization" : "", q.bits_per_weight,
               double(before) / (1 << 20), double(q.bytes) / (1 << 20), dtype_name(m.weights.tok_embeddings.dtype()));
    fmt::print("wrote {}\n", *out);
  });
}

}  // namespace lora::cli
