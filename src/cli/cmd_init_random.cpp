// lora init-random: a random-weight model of a given shape, written as a Hugging Face folder — with
// --quantize its linear layers are created directly in quantized form, so a Llama-2-7B-shaped QLoRA base
// needs ~3.5 GB instead of a 28 GB fp32 copy first. For benchmarks and tests of memory and speed.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/context.h"
#include "core/error.h"
#include "formats/model_loader.h"
#include "model/quantize_model.h"
#include "model/random_model.h"
#include "tokenizer/tokenizer.h"

namespace lora::cli {

namespace {

struct InitRandomOptions {
  std::string config = "llama2-7b";
  std::string out, quantize, dtype = "bf16", tokenizer;
  bool no_double_quant = false;
  uint64_t seed = 1;
  int threads = 0;
};

ModelConfig config_from(const std::string& name_or_path) {
  if (!std::filesystem::is_regular_file(name_or_path)) return model_config_by_name(name_or_path);
  std::ifstream in(name_or_path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail_format(name_or_path, "not valid JSON");
  ModelConfig c = ModelConfig::from_hf_json(j, name_or_path);
  c.validate(name_or_path);
  return c;
}

void run_init_random(const InitRandomOptions& o) {
  set_thread_count(o.threads);
  const ModelConfig config = config_from(o.config);
  const DType dense = dtype_from_name(o.dtype);
  Model m = o.quantize.empty()
                ? random_model(config, o.seed, dense)
                : random_quantized_model(config, o.seed, QuantConfig{quant_type_from_name(o.quantize),
                                                                     !o.no_double_quant && o.quantize != "int8"},
                                         dense);
  if (!o.tokenizer.empty()) m.tokenizer = load_tokenizer(o.tokenizer);
  save_hf_folder(m, o.out);
  std::string what = fmt::format("{} parameters", m.parameter_count());
  if (!o.quantize.empty()) {
    const QuantSummary q = quant_summary(m);
    what += fmt::format(", linear layers in {} at {:.3f} bits/weight", o.quantize, q.bits_per_weight);
  }
  fmt::print("wrote {} (random weights, {})\n", o.out, what);
}

}  // namespace

void register_init_random(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "init-random",
      "Write a random-weight model of a given shape as a Hugging Face folder; with --quantize the linear layers are "
      "created directly in bitsandbytes' quantized form (no full-precision copy), for benchmarks");
  auto o = std::make_shared<InitRandomOptions>();
  cmd->add_option("--config", o->config, "llama2-7b, qwen2.5-0.5b, smollm2-135m, or a config.json file")->capture_default_str();
  cmd->add_option("-o,--output", o->out, "output folder (must not exist yet, or be empty)")->required();
  cmd->add_option("--quantize", o->quantize, "create the linear layers as nf4, fp4 or int8")
      ->check(CLI::IsMember({"nf4", "fp4", "int8"}));
  cmd->add_flag("--no-double-quant", o->no_double_quant, "keep the 4-bit absmax values in fp32");
  cmd->add_option("--dtype", o->dtype, "dtype of the weights that are not quantized (embeddings, lm_head)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->add_option("--seed", o->seed, "random seed")->capture_default_str();
  cmd->add_option("--tokenizer", o->tokenizer, "a tokenizer to save with the model (its vocabulary should fit the config)");
  cmd->add_option("-t,--threads", o->threads, "threads (default: all cores, or LORA_THREADS)");
  cmd->callback([o] { run_init_random(*o); });
}

}  // namespace lora::cli
