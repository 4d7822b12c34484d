// lora convert: any loadable model -> a self-contained Hugging Face folder, or (-o NAME.gguf) a GGUF file
// llama.cpp loads, as convert_hf_to_gguf.py writes it (f32, f16 or bf16; `lora quantize` writes the ggml
// quant types).
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "formats/gguf_model_writer.h"
#include "formats/model_loader.h"

namespace lora::cli {

void register_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Write a model as a Hugging Face folder (config.json, model.safetensors, "
                                            "tokenizer.json, tokenizer_config.json), or as a GGUF file (-o NAME.gguf)");
  auto opts = std::make_shared<ModelOptions>();
  auto out = std::make_shared<std::string>();
  auto out_dtype = std::make_shared<std::string>();
  opts->add_to(cmd);
  cmd->add_option("-o,--output", *out, "output folder (must not exist yet, or be empty), or a .gguf file")->required();
  cmd->add_option("--out-dtype", *out_dtype, "dtype of the written weights (default: as loaded)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd->callback([opts, out, out_dtype] {
    const bool gguf = out->size() > 5 && out->substr(out->size() - 5) == ".gguf";
    const Model m = opts->load(gguf);  // a GGUF file carries its tokenizer
    std::optional<DType> dt;
    if (!out_dtype->empty()) dt = dtype_from_name(*out_dtype);
    if (gguf)
      save_gguf_model(m, *out, dt);
    else
      save_hf_folder(m, *out, dt);
    fmt::print("wrote {} ({} parameters{})\n", *out, m.parameter_count(), m.tokenizer ? ", with tokenizer" : ", no tokenizer");
  });
}

}  // namespace lora::cli
