// lora quantize: a model's linear layers to bitsandbytes NF4 / FP4 (4-bit) or LLM.int8 rows, written as a
// Hugging Face folder in bitsandbytes' state-dict layout, as transformers saves a "bnb-4bit" model; or
// the whole model to one of llama.cpp's GGUF types (q8_0, q4_k_m, ...), as llama-quantize writes it.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "formats/gguf_model_writer.h"
#include "formats/gguf_quant_recipe.h"
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

bool is_bnb_type(const std::string& t) { return t == "nf4" || t == "fp4" || t == "int8"; }

void write_gguf(Model& m, const std::string& type, const std::string& out) {
  const GGUFQuantRecipe& recipe = gguf_quant_recipe(type);
  const GGUFQuantSummary q = quantize_model_for_gguf(m, recipe);
  save_gguf_model(m, out, std::nullopt, recipe.file_type);
  std::string mix;
  for (const auto& [t, n] : q.tensors_per_type) mix += fmt::format("{}{} {}", mix.empty() ? "" : ", ", n, dtype_name(t));
  fmt::print("quantized {} tensors ({} parameters) as {}: {}; {:.3f} bits/weight, {:.1f} MiB; norms kept in f32\n",
             [&] { int64_t n = 0; for (const auto& e : q.tensors_per_type) n += e.second; return n; }(), q.elements,
             recipe.name, mix, 8.0 * double(q.bytes) / double(q.elements), double(q.bytes) / (1 << 20));
  fmt::print("wrote {}\n", out);
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "quantize",
      "Quantize a model: its linear layers to bitsandbytes NF4/FP4 (optional double quantization) or LLM.int8 "
      "rows, written as a Hugging Face folder in bitsandbytes' layout (what transformers saves for a bnb model); "
      "or the whole model to a llama.cpp GGUF type (q8_0, q4_0, q4_k_m, q5_k_m, q6_k, ...; OUT.gguf), with "
      "llama-quantize's per-tensor mix");
  auto opts = std::make_shared<ModelOptions>();
  auto out = std::make_shared<std::string>();
  auto type = std::make_shared<std::string>("nf4");
  auto no_double_quant = std::make_shared<bool>(false);
  opts->add_to(cmd, /*model_required=*/true, /*quantize_option=*/false);
  cmd->add_option("-o,--output", *out, "output folder (must not exist yet, or be empty); a .gguf file for GGUF types")
      ->required();
  std::vector<std::string> types = {"nf4", "fp4", "int8"};
  for (const std::string& n : gguf_quant_recipe_names()) types.push_back(n);
  cmd->add_option("--type", *type,
                  "nf4 (QLoRA's NormalFloat), fp4, int8 (per-row absmax, bitsandbytes 8-bit), or a GGUF type: "
                  "q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k iq4_nl iq4_xs")
      ->capture_default_str()
      ->check(CLI::IsMember(types, CLI::ignore_case));
  cmd->add_flag("--no-double-quant", *no_double_quant,
                "keep the 4-bit absmax values in fp32 (4.5 bits/weight) instead of quantizing them to 8 bits (4.127)");
  cmd->callback([opts, out, type, no_double_quant] {
    if (!is_bnb_type(*type)) {
      if (out->size() < 5 || out->substr(out->size() - 5) != ".gguf")
        fail("--type {} writes a GGUF file: -o must end in .gguf (got '{}')", *type, *out);
      Model m = opts->load(true);  // llama.cpp needs the tokenizer in the file
      write_gguf(m, *type, *out);
      return;
    }
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
