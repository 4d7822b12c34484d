// lora convert: any loadable model -> a self-contained Hugging Face folder.
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "formats/model_loader.h"

namespace lora::cli {

void register_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Write a model as a Hugging Face folder (config.json, model.safetensors, "
                                            "tokenizer.json, tokenizer_config.json)");
  auto opts = std::make_shared<ModelOptions>();
  auto out = std::make_shared<std::string>();
  auto out_dtype = std::make_shared<std::string>();
  opts->add_to(cmd);
  cmd->add_option("-o,--output", *out, "output folder (must not exist yet, or be empty)")->required();
  cmd->add_option("--out-dtype", *out_dtype, "dtype of the written weights (default: as loaded)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd->callback([opts, out, out_dtype] {
    const Model m = opts->load(false);
    std::optional<DType> dt;
    if (!out_dtype->empty()) dt = dtype_from_name(*out_dtype);
    save_hf_folder(m, *out, dt);
    fmt::print("wrote {} ({} parameters{})\n", *out, m.parameter_count(), m.tokenizer ? ", with tokenizer" : ", no tokenizer");
  });
}

}  // namespace lora::cli
