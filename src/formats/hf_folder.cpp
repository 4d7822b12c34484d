#include "formats/hf_folder.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/quant.h"
#include "formats/bnb.h"
#include "formats/safetensors.h"
#include "formats/weight_names.h"
#include "tokenizer/tokenizer.h"

namespace lora {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_format(path, "cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail_format(path, "not valid JSON");
  return j;
}

// The tensors of a checkpoint, whether in one file or sharded; each shard is mapped once.
class CheckpointTensors {
 public:
  explicit CheckpointTensors(const std::string& dir) {
    const std::string single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json";
    if (fs::exists(index)) {
      const json j = read_json_file(index);
      if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
        fail_format(index, "missing 'weight_map' object");
      std::map<std::string, const SafetensorsFile*> opened;
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it->is_string()) fail_format(index, "weight_map entry '{}' is not a file name", it.key());
        const std::string shard = it->get<std::string>();
        if (shard.find('/') != std::string::npos || shard == "..")
          fail_format(index, "weight_map entry '{}' names a file outside the folder: '{}'", it.key(), shard);
        if (!opened.count(shard)) {
          shards_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(dir + "/" + shard)));
          opened[shard] = shards_.back().get();
        }
        where_[it.key()] = opened[shard];
      }
    } else if (fs::exists(single)) {
      shards_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(single)));
      for (const SafetensorsTensorInfo& t : shards_[0]->tensors()) where_[t.name] = shards_[0].get();
    } else {
      fail_format(dir, "no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are supported)");
    }
  }

  bool has(const std::string& name) const { return where_.count(name) != 0; }
  std::optional<Tensor> find(const std::string& name) const {
    auto it = where_.find(name);
    if (it == where_.end() || !it->second->has(name)) return std::nullopt;
    return it->second->load(name);
  }
  const SafetensorsFile& file_of(const std::string& name, const std::string& dir) const {
    auto it = where_.find(name);
    if (it == where_.end()) fail_format(dir, "missing tensor '{}'", name);
    return *it->second;
  }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, const SafetensorsFile*> where_;
};

Tensor load_weight(const CheckpointTensors& ckpt, const std::string& dir, const std::string& name,
                   const std::vector<int64_t>& shape, WeightKind kind, bool keep_quantized = true) {
  // A bitsandbytes-quantized weight (4-bit or 8-bit state beside it) stays quantized for the linear
  // layers; the embedding and lm_head are always 16/32-bit here, so a quantized one is decoded.
  if (kind == WeightKind::Linear) {
    const TensorLookup find = [&](const std::string& n) { return ckpt.find(n); };
    if (std::optional<Tensor> q = load_bnb_weight(find, dir, name, shape)) {
      if (keep_quantized) return *q;
      Tensor f = dequantize(*q);
      return q->quant()->source_dtype == DType::F32 ? f : f.to(DType::BF16);
    }
  }
  const SafetensorsFile& file = ckpt.file_of(name, dir);
  const SafetensorsTensorInfo* info = file.find(name);
  if (!info) fail_format(file.path(), "missing tensor '{}' (listed in the index)", name);
  if (!info->dtype || (*info->dtype != DType::F32 && *info->dtype != DType::BF16 && *info->dtype != DType::F16))
    fail_format(file.path(), "tensor '{}' has dtype {}, expected F32, BF16 or F16{}", name, info->dtype_name,
                info->dtype_name == "U8" ? " (a quantized checkpoint?)" : "");
  Tensor t = file.load(name);
  check_shape(file.path(), name, t, shape);
  if (t.dtype() == DType::F16 || (kind != WeightKind::Linear && t.dtype() != DType::F32)) t = t.to(DType::F32);
  return t;
}

// Gemma's checkpoints store an RMSNorm weight w for the factor 1 + w; the model holds the factor (model/model.h).
Tensor norm_from_checkpoint(Tensor stored, const ModelConfig& c) {
  if (!c.gemma_block) return stored;
  Tensor t = stored.clone();  // (the stored tensor may map the file)
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] += 1.0f;
  return t;
}

Tensor norm_to_checkpoint(const Tensor& factor, const ModelConfig& c) {
  if (!c.gemma_block) return factor;
  Tensor w = factor.to(DType::F32).clone();
  for (int64_t i = 0; i < w.numel(); ++i) w.f32()[i] -= 1.0f;
  return w;
}

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    default: fail("cannot save model weights as {}", dtype_name(t));
  }
}

}  // namespace

Model load_hf_folder(const std::string& dir, const LoadOptions& options) {
  const std::string config_path = dir + "/config.json";
  if (!fs::exists(config_path)) fail_format(dir, "not a Hugging Face model folder (no config.json)");
  Model m;
  const json config_json = read_json_file(config_path);
  m.config = ModelConfig::from_hf_json(config_json, config_path);
  if (config_json.contains("quantization_config")) {
    const json& q = config_json["quantization_config"];
    if (!q.is_object()) fail_format(config_path, "quantization_config must be an object, found {}", q.dump());
    const json method_field = q.value("quant_method", json("bitsandbytes"));
    const std::string method = method_field.is_string() ? method_field.get<std::string>() : method_field.dump();
    if (method != "bitsandbytes")
      fail_format(config_path, "quantization_config.quant_method '{}' is not supported (bitsandbytes 4-bit and 8-bit are)",
                  method);
  }
  m.source_path = dir;
  m.source_format = "hf";
  ModelConfig& c = m.config;

  const CheckpointTensors ckpt(dir);
  ModelWeights& w = m.weights;
  w.tok_embeddings = load_weight(ckpt, dir, "model.embed_tokens.weight", {c.vocab_size, c.hidden_size}, WeightKind::Linear,
                                /*keep_quantized=*/false);
  w.norm = norm_from_checkpoint(load_weight(ckpt, dir, "model.norm.weight", {c.hidden_size}, WeightKind::Norm), c);
  if (c.tie_word_embeddings || !ckpt.has("lm_head.weight")) {
    c.tie_word_embeddings = true;
    w.lm_head = w.tok_embeddings;
  } else {
    w.lm_head = load_weight(ckpt, dir, "lm_head.weight", {c.vocab_size, c.hidden_size}, WeightKind::Linear,
                            /*keep_quantized=*/false);
  }
  w.layers.resize(size_t(c.num_hidden_layers));
  const std::vector<LayerTensorSpec> specs = layer_tensor_specs(c);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    for (const LayerTensorSpec& s : specs) {
      if (s.fused_part > 0) continue;  // (read with the first part)
      if (s.fused_part == 0) {  // Phi-3's qkv_proj / gate_up_proj: the model holds the parts as row ranges of it
        // (a bitsandbytes-quantized fused matrix is decoded: its blocks run across the parts' rows)
        const Tensor whole = load_weight(ckpt, dir, hf_layer_name(i, s), fused_shape(s, c), s.kind, /*keep_quantized=*/false);
        assign_fused_parts(w.layers[size_t(i)], whole, s, specs, c);
        continue;
      }
      Tensor t = load_weight(ckpt, dir, hf_layer_name(i, s), expected_shape(s, c), s.kind);
      w.layers[size_t(i)].*s.member = s.kind == WeightKind::Norm ? norm_from_checkpoint(std::move(t), c) : std::move(t);
    }

  if (options.load_tokenizer && options.tokenizer_path.empty() &&
      (fs::exists(dir + "/tokenizer.json") || fs::exists(dir + "/tokenizer.model")))
    m.tokenizer = load_tokenizer(dir);
  return m;
}

void save_hf_folder(const Model& model, const std::string& dir, std::optional<DType> dtype,
                    const std::string& tokenizer_files_from) {
  const ModelWeights& w = model.weights;
  const bool tied = model.config.tie_word_embeddings || w.lm_head.data() == w.tok_embeddings.data();
  // safetensors has no ggml block types: a GGUF's quantized tensors are decoded (to f32 unless told).
  auto stored = [&](const Tensor& t) {
    if (is_ggml_quant(t.dtype())) return t.to(dtype.value_or(DType::F32));
    return dtype && t.dtype() != *dtype ? t.to(*dtype) : t;
  };
  // Quantized linear weights keep bitsandbytes' layout unless an explicit dtype asks for them decoded.
  const QuantState* quant = nullptr;

  std::map<std::string, Tensor> tensors;
  tensors["model.embed_tokens.weight"] = stored(w.tok_embeddings);
  tensors["model.norm.weight"] = stored(norm_to_checkpoint(w.norm, model.config));
  if (!tied) tensors["lm_head.weight"] = stored(w.lm_head);
  const std::vector<LayerTensorSpec> specs = layer_tensor_specs(model.config);
  for (size_t i = 0; i < w.layers.size(); ++i)
    for (const LayerTensorSpec& s : specs) {
      if (s.fused_part > 0) continue;
      if (s.fused_part == 0) {  // Phi-3: the parts written as the one matrix the checkpoints hold
        std::vector<Tensor> parts;
        for (const LayerTensorSpec& part : fused_group(s, specs)) {
          const Tensor& t = w.layers[i].*part.member;
          if (t.empty()) fail("{}: cannot save: layer {} has no part {} of {}", dir, i, part.fused_part, s.hf_name);
          if (t.quantized() && !is_ggml_quant(t.dtype()) && !dtype)
            fail("{}: cannot save {} quantized by bitsandbytes (its blocks would run across q, k and v); pass a dtype",
                 dir, s.hf_name);
          parts.push_back(stored(t));
        }
        tensors[hf_layer_name(int64_t(i), s)] = Tensor::concat_rows(parts);
        continue;
      }
      const Tensor& t = w.layers[i].*s.member;
      if (t.empty()) fail("{}: cannot save: layer {} has no {}", dir, i, s.hf_name);
      if (t.quantized() && !is_ggml_quant(t.dtype()) && !dtype) {
        if (quant && (quant->type != t.quant()->type || quant->nested != t.quant()->nested))
          fail("{}: cannot save a model whose linear weights mix quantizations ({} and {})", dir,
               quant_type_name(quant->type), quant_type_name(t.quant()->type));
        quant = t.quant();
        add_bnb_tensors(hf_layer_name(int64_t(i), s), t, tensors);
      } else {
        tensors[hf_layer_name(int64_t(i), s)] = stored(s.kind == WeightKind::Norm ? norm_to_checkpoint(t, model.config) : t);
      }
    }

  ModelConfig config = model.config;
  config.tie_word_embeddings = tied;
  json config_json = config.to_hf_json();
  const DType embedding_dtype = is_ggml_quant(w.tok_embeddings.dtype()) ? DType::F32 : w.tok_embeddings.dtype();
  config_json["torch_dtype"] = torch_dtype_name(dtype.value_or(embedding_dtype));
  if (quant) config_json["quantization_config"] = bnb_quantization_config(*quant);
  const json generation = {{"bos_token_id", config.bos_token_id}, {"eos_token_id", config.eos_token_id}};

  AtomicDirectory out(dir);
  write_file_atomic(out / "config.json", config_json.dump(2) + "\n");
  write_file_atomic(out / "generation_config.json", generation.dump(2) + "\n");
  save_safetensors(out / "model.safetensors", tensors, {{"format", "pt"}});
  if (model.tokenizer) save_hf_tokenizer(*model.tokenizer, out.tmp_path());
  if (!tokenizer_files_from.empty())
    for (const char* name : {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                             "added_tokens.json", "generation_config.json", "chat_template.jinja"}) {
      const fs::path from = fs::path(tokenizer_files_from) / name;
      std::error_code ec;
      if (!fs::exists(from, ec)) continue;
      fs::copy_file(from, out / name, fs::copy_options::overwrite_existing, ec);
      if (ec) fail("{}: cannot copy {}: {}", dir, from.string(), ec.message());
    }
  out.commit();
}

}  // namespace lora
