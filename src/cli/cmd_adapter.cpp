// lora adapter info | combine | convert: adapters as files (PEFT folders, GGUF adapter files).
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "adapters/adapter_io.h"
#include "adapters/combine.h"
#include "cli/adapter_options.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "core/context.h"
#include "core/error.h"
#include "formats/hf_cache.h"
#include "formats/model_loader.h"
#include "formats/safetensors.h"

namespace lora::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Bytes the adapter takes: its GGUF file, or the folder's config and weights.
uint64_t size_on_disk(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return fs::file_size(path, ec);
  uint64_t n = 0;
  for (const auto& entry : fs::recursive_directory_iterator(path, ec))
    if (entry.is_regular_file(ec)) n += entry.file_size(ec);
  return n;
}

std::string human_bytes(uint64_t n) {
  if (n < 1024) return fmt::format("{} B", n);
  if (n < 1024 * 1024) return fmt::format("{:.1f} KiB", double(n) / 1024);
  if (n < 1024ull * 1024 * 1024) return fmt::format("{:.1f} MiB", double(n) / (1024 * 1024));
  return fmt::format("{:.2f} GiB", double(n) / (1024.0 * 1024 * 1024));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// What any PEFT folder says about itself, whatever its peft_type (AdaLoRA, IA3...): its config and tensor sizes.
json describe_other_peft(const std::string& dir, const json& config) {
  json j = {{"path", dir}, {"format", "peft"}, {"peft_type", config.value("peft_type", "")}};
  for (const char* key : {"base_model_name_or_path", "r", "init_r", "target_r", "lora_alpha", "target_modules"})
    if (config.contains(key)) j[key] = config[key];
  int64_t params = 0;
  if (fs::exists(dir + "/adapter_model.safetensors")) {
    const SafetensorsFile file = SafetensorsFile::open(dir + "/adapter_model.safetensors");
    for (const SafetensorsTensorInfo& t : file.tensors()) {
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;
      params += n;
    }
  }
  j["parameters"] = params;
  j["size_bytes"] = size_on_disk(dir);
  return j;
}

json describe(const Adapter& a, const std::string& path) {
  json j;
  j["path"] = path;
  j["format"] = a.format;
  j["peft_type"] = a.is_adalora() ? "ADALORA" : "LORA";
  std::string type = a.uses_dora() ? "DoRA" : "LoRA";
  if (a.config.use_rslora) type += " (rsLoRA)";
  if (a.is_adalora()) {
    type = fmt::format("AdaLoRA (init_r {} -> target_r {})", a.config.adalora->init_r, a.config.adalora->target_r);
    j["init_r"] = a.config.adalora->init_r;
    j["target_r"] = a.config.adalora->target_r;
  }
  j["type"] = type;
  j["base_model"] = a.config.base_model_name_or_path.empty() ? json(nullptr) : json(a.config.base_model_name_or_path);
  j["architecture"] = a.architecture.empty() ? json(nullptr) : json(a.architecture);
  j["r"] = a.config.r;
  json ranks = json::object();
  // AdaLoRA: the triplets kept (E ≠ 0) per module, pruned modules at 0
  std::map<int64_t, int> histogram = a.rank_histogram();
  if (a.is_adalora()) {
    const Adapter plain = as_plain_lora(a);
    histogram = plain.rank_histogram();
    if (a.linears.size() > plain.linears.size()) histogram[0] += int(a.linears.size() - plain.linears.size());
  }
  for (const auto& [r, n] : histogram) ranks[std::to_string(r)] = n;
  j["ranks"] = ranks;
  j["lora_alpha"] = a.config.lora_alpha;
  j["use_rslora"] = a.config.use_rslora;
  if (!a.config.alpha_pattern.empty()) j["alpha_pattern"] = a.config.alpha_pattern;
  if (!a.config.rank_pattern.empty()) j["rank_pattern"] = a.config.rank_pattern;
  j["target_modules"] = a.config.target_modules_regex.empty() ? json(a.config.target_modules) : json(a.config.target_modules_regex);
  std::set<std::string> kinds;
  std::set<int64_t> layers;
  for (const auto& [module, f] : a.linears) {
    const auto ref = parse_module_path(module);
    if (ref && ref->kind == ModuleRef::Kind::Linear) {
      layers.insert(ref->layer);
      const std::string m = site_module_name(ref->site);
      kinds.insert(m.substr(m.find('.') + 1));
    } else {
      kinds.insert(module);
    }
  }
  if (a.embedding) kinds.insert("embed_tokens");
  j["adapted_modules"] = json(std::vector<std::string>(kinds.begin(), kinds.end()));
  j["adapted_layers"] = layers.size();
  j["lora_modules"] = a.linears.size() + (a.embedding ? 1 : 0);
  std::vector<std::string> saved;
  for (const auto& [module, t] : a.replaced) saved.push_back(module);
  j["modules_to_save"] = saved;
  j["bias"] = a.config.bias;
  j["trained_biases"] = a.biases.size();
  j["parameters"] = a.parameter_count();
  j["dtype"] = dtype_name(a.stored_dtype);
  j["size_bytes"] = size_on_disk(path);
  return j;
}

void print_text(const json& j) {
  auto line = [](const char* label, const std::string& value) { fmt::print("{:<15} {}\n", label, value); };
  auto str = [](const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
  line("adapter:", fmt::format("{} ({})", str(j["path"]), str(j["format"])));
  line("type:", j.contains("type") ? str(j["type"]) : str(j["peft_type"]));
  if (j.contains("base_model") && !j["base_model"].is_null()) line("base model:", str(j["base_model"]));
  if (j.contains("base_model_name_or_path")) line("base model:", str(j["base_model_name_or_path"]));
  if (j.contains("architecture") && !j["architecture"].is_null()) line("architecture:", str(j["architecture"]));
  if (j.contains("ranks")) {
    std::string ranks;
    for (auto it = j["ranks"].begin(); it != j["ranks"].end(); ++it)
      ranks += fmt::format("{}{} ({} module{})", ranks.empty() ? "" : ", ", it.key(), it.value().get<int>(), it.value().get<int>() == 1 ? "" : "s");
    line("rank:", ranks);
  } else if (j.contains("r")) {
    line("rank:", str(j["r"]));
  }
  if (j.contains("lora_alpha"))
    line("alpha:", str(j["lora_alpha"]) + (j.value("use_rslora", false) ? " (rsLoRA: scaling alpha/sqrt(r))" : ""));
  if (j.contains("target_modules")) line("targets:", str(j["target_modules"]));
  if (j.contains("adapted_modules"))
    line("adapted:", fmt::format("{} in {} layer(s): {} LoRA modules", str(j["adapted_modules"]), j["adapted_layers"].get<int>(),
                                 j["lora_modules"].get<int>()));
  if (j.contains("modules_to_save") && !j["modules_to_save"].empty()) line("modules_to_save:", str(j["modules_to_save"]));
  if (j.value("trained_biases", 0) > 0) line("biases:", fmt::format("{} trained (bias = {})", j["trained_biases"].get<int>(), str(j["bias"])));
  line("parameters:", fmt::format("{}", j["parameters"].get<int64_t>()));
  if (j.contains("dtype")) line("dtype:", str(j["dtype"]));
  line("size on disk:", fmt::format("{} ({} bytes)", human_bytes(j["size_bytes"].get<uint64_t>()), j["size_bytes"].get<uint64_t>()));
}

void run_info(const std::string& path, bool as_json) {
  json j;
  if (detect_adapter_format(path) == "peft" && fs::exists(path + "/adapter_config.json")) {
    const json config = json::parse(read_file(path + "/adapter_config.json"), nullptr, false);
    if (config.is_object() && config.value("peft_type", "LORA") != "LORA" &&
        config.value("peft_type", "LORA") != "ADALORA")
      j = describe_other_peft(path, config);
  }
  if (j.is_null()) j = describe(read_adapter(path), path);
  if (as_json) fmt::print("{}\n", j.dump(2));
  else print_text(j);
}

struct CombineOptions {
  AdapterOptions adapters;
  std::string method = "svd";
  int64_t rank = 0;
  std::string output;
  std::string model;
  std::string outtype = "f32";
};

Model load_base(const std::string& path) {
  LoadOptions options;
  options.load_tokenizer = false;
  return load_model(resolve_model_path(path), options);
}

bool is_gguf_path(const std::string& p) { return fs::path(p).extension() == ".gguf" || (fs::exists(p) && !fs::is_directory(p)); }

void run_combine(const CombineOptions& o) {
  if (o.adapters.specs.size() < 1) fail("lora adapter combine: give the adapters with --adapter PATH[:WEIGHT]");
  const std::vector<AdapterSpec> specs = o.adapters.parsed();
  bool gguf = fs::path(o.output).extension() == ".gguf";
  for (const AdapterSpec& s : specs) gguf = gguf || is_gguf_path(s.path);
  if (gguf && o.model.empty())
    fail("lora adapter combine: GGUF adapters need the base model (-m) for their architecture and q/k row order");
  std::optional<Model> base;
  if (!o.model.empty()) base = load_base(o.model);
  std::vector<Adapter> adapters;
  for (const AdapterSpec& s : specs) adapters.push_back(base ? load_adapter(s.path, *base) : read_adapter(s.path));
  std::vector<WeightedAdapter> inputs;
  for (size_t i = 0; i < specs.size(); ++i) inputs.push_back({&adapters[i], specs[i].scale});
  Adapter out = combine_adapters(inputs, combine_method_from_name(o.method), o.rank);
  if (out.config.base_model_name_or_path.empty() && base) out.config.base_model_name_or_path = o.model;
  write_adapter(out, o.output, base ? &*base : nullptr, dtype_from_name(o.outtype));
  std::string ranks;
  for (const auto& [r, n] : out.rank_histogram()) ranks += fmt::format("{}{} ({} modules)", ranks.empty() ? "" : ", ", r, n);
  fmt::print(stderr, "combined {} adapters ({}) into {}: rank {}\n", specs.size(), o.method, o.output, ranks);
}

struct ConvertOptions {
  std::string input, output, model;
  std::string outtype = "f32";
};

void run_convert(const ConvertOptions& o) {
  const bool gguf = fs::path(o.output).extension() == ".gguf" || detect_adapter_format(o.input) == "gguf";
  if (gguf && o.model.empty())
    fail("lora adapter convert: GGUF adapters need the base model (-m) for their architecture and q/k row order");
  std::optional<Model> base;
  if (!o.model.empty()) base = load_base(o.model);
  Adapter a = base ? load_adapter(o.input, *base) : read_adapter(o.input);
  if (a.config.base_model_name_or_path.empty() && base) a.config.base_model_name_or_path = o.model;
  write_adapter(a, o.output, base ? &*base : nullptr, dtype_from_name(o.outtype));
  fmt::print(stderr, "wrote {} ({})\n", o.output, fs::path(o.output).extension() == ".gguf" ? "gguf" : "peft");
}

}  // namespace

void register_adapter(CLI::App& app) {
  auto* cmd = app.add_subcommand("adapter", "Adapters as files: describe, combine, convert between PEFT and GGUF");
  cmd->require_subcommand(1);

  auto* info = cmd->add_subcommand("info", "Type, base model, rank(s), alpha, targets, parameters, size of an adapter");
  auto info_path = std::make_shared<std::string>();
  auto info_json = std::make_shared<bool>(false);
  info->add_option("adapter", *info_path, "PEFT adapter folder or GGUF adapter file")->required();
  info->add_flag("--json", *info_json, "print one JSON object");
  info->callback([info_path, info_json] { run_info(*info_path, *info_json); });

  auto* combine = cmd->add_subcommand("combine", "A new adapter from several, like PEFT's add_weighted_adapter");
  auto c = std::make_shared<CombineOptions>();
  combine->add_option("--adapter", c->adapters.specs, "input adapter PATH[:WEIGHT] (repeatable)")->required();
  combine->add_option("--method", c->method,
                      "cat (exact sum, rank Σ r), linear (equal ranks), svd (summed delta truncated to --rank)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cat", "linear", "svd"}));
  combine->add_option("--rank", c->rank, "rank of an svd combination (default: the largest input rank)");
  combine->add_option("-o,--output", c->output, "output: a PEFT folder, or a .gguf file (needs -m)")->required();
  combine->add_option("-m,--model", c->model, "base model: checks the adapters fit; needed for GGUF inputs or output");
  combine->add_option("--outtype", c->outtype, "GGUF tensor type: f32, f16 or bf16")->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  combine->callback([c] { run_combine(*c); });

  auto* convert = cmd->add_subcommand("convert", "PEFT folder <-> GGUF adapter file (llama.cpp --lora)");
  auto v = std::make_shared<ConvertOptions>();
  convert->add_option("adapter", v->input, "input: PEFT adapter folder or GGUF adapter file")->required();
  convert->add_option("-o,--output", v->output, "output: a .gguf file, or a PEFT folder")->required();
  convert->add_option("-m,--model", v->model, "base model the adapter belongs to (needed for GGUF)");
  convert->add_option("--outtype", v->outtype, "GGUF tensor type: f32, f16 or bf16")->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  convert->callback([v] { run_convert(*v); });
}

}  // namespace lora::cli
