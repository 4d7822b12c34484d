#pragma once
// A LoRA adapter as a product: the tensors a PEFT folder or a GGUF adapter file holds, independent of
// any base model in memory, ready to be checked against one (check_adapter_fits), applied on the fly
// (AdapterSet), folded into a model (merge_adapters), combined with others (combine_adapters) or
// written back out (peft_io.h, gguf_adapter.h).
//
// Modules are named by their path in the Hugging Face model, as PEFT names them:
// "model.layers.3.self_attn.q_proj", "model.embed_tokens", "lm_head". Tensors are f32 in the
// Hugging Face row order (q/k rows in rotate_half order, whatever the file stores).
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "adapters/lora_config.h"
#include "core/tensor.h"
#include "model/forward_adapters.h"
#include "model/model.h"

namespace lora {

// ΔW = scaling · B A, with B [out, r] and A [r, in]. DoRA adds a magnitude m [out]:
//   W' = m ⊙ (W + ΔW) / ‖W + ΔW‖_row.
// AdaLoRA (PEFT's SVD-shaped update) adds singular values E [r, 1]: ΔW = scaling · B diag(E) A; a pruned
// triplet has E = 0. Only a PEFT AdaLoRA folder holds E; everything that applies, merges, combines or
// exports adapters works on as_plain_lora(), which folds E into A.
// For the token embedding (PEFT's lora_embedding_A/B) A is [r, vocab], B [hidden, r], and row v of the
// table gains scaling · B A[:, v].
struct LoraFactors {
  Tensor a, b;
  Tensor magnitude;  // empty unless DoRA
  float scaling = 1.0f;
  Tensor e;          // [r, 1], AdaLoRA only

  int64_t rank() const { return a.dim(0); }
  // scaling · B diag(E) A as an [out, in] f32 tensor (for the embedding: [hidden, vocab]).
  Tensor delta() const;
};

struct Adapter {
  std::string name;         // its name in an AdapterSet ("" until it has one)
  std::string source;       // the folder or file it was read from ("" when built in memory)
  std::string format;       // "peft", "gguf", or "" when built in memory
  std::string architecture; // a GGUF adapter's general.architecture; "" for PEFT folders
  LoraConfig config;        // adapter_config.json; for a GGUF file, reconstructed from its tensors
  DType stored_dtype = DType::F32;  // what the file stored (written back the same way)
  std::string original_config;      // adapter_config.json text as read from a PEFT folder ("" otherwise)

  std::map<std::string, LoraFactors> linears;  // module path (layers' linears and "lm_head") -> LoRA
  std::optional<LoraFactors> embedding;        // LoRA on model.embed_tokens
  std::map<std::string, Tensor> biases;        // module path -> trained bias [out] (bias = "all" / "lora_only")
  // Whole weights that replace the base module (modules_to_save): "model.embed_tokens", "lm_head".
  std::map<std::string, Tensor> replaced;
  // Copies of the base embedding / head PEFT saves beside an embedding or lm_head LoRA
  // ("...embed_tokens.base_layer.weight", save_embedding_layers). PEFT loads them into the base layer:
  // equal to the base they change nothing; otherwise they act like a replacement.
  std::map<std::string, Tensor> embedding_layers;
  // Phi-3's fused modules (qkv_proj, gate_up_proj) held as their parts, as the model holds its weights
  // (split_fused_modules); the writers join them back into the modules the files name (join_fused_modules).
  bool fused_modules = false;

  // What the adapter adds to a model: LoRA factors, DoRA magnitudes, trained biases, replaced modules.
  int64_t parameter_count() const;
  bool uses_dora() const;
  bool is_adalora() const { return config.adalora.has_value(); }
  // rank -> how many LoRA modules (the embedding included) have it.
  std::map<int64_t, int> rank_histogram() const;
};

// Where a module path points in a Llama-family model.
struct ModuleRef {
  enum class Kind { Linear, Embedding, Head } kind = Kind::Linear;
  int64_t layer = -1;               // Linear only
  LinearSite site = LinearSite::Q;  // Linear (Q..Down) or Head; a fused module's first part (Q, Gate)
  bool fused = false;               // Phi-3's qkv_proj or gate_up_proj
};

// "model.layers.3.mlp.up_proj" -> {Linear, 3, Up}; "model.embed_tokens"; "lm_head";
// "model.layers.3.self_attn.qkv_proj" -> {Linear, 3, Q, fused}. nullopt otherwise.
std::optional<ModuleRef> parse_module_path(const std::string& path);
const char* module_name(const ModuleRef& m);  // "mlp.up_proj", "self_attn.qkv_proj", "lm_head"
const char* module_gguf_name(const ModuleRef& m);  // "ffn_up", "attn_qkv" ("output" for Head)

// A module the files of a fused_linears family (Phi-3) store as one matrix, and PEFT adapts as one module:
// qkv_proj holds q|k|v, gate_up_proj gate|up, in that order of rows.
struct FusedModule {
  const char* hf;    // "self_attn.qkv_proj"
  const char* gguf;  // "attn_qkv"
  std::vector<LinearSite> parts;
};
// The fused module `site` is part of in a model of config c; null when c has none or site is not a part.
const FusedModule* fused_module_of(LinearSite site, const ModelConfig& c);
const FusedModule* fused_module_holding(LinearSite site);  // the same in any model that fuses
// The module a LoRA config names for the site: the fused module's path for its parts, else module_path.
std::string file_module_path(int64_t layer, LinearSite site, const ModelConfig& c);
// Output rows of a layer site in a model of config c (q_dim, kv_dim, intermediate_size, hidden_size).
int64_t site_rows(LinearSite site, const ModelConfig& c);
// Every LoRA on a fused module becomes one LoRA per part: the same A (and AdaLoRA's E), B's and DoRA's
// magnitude's rows of the part. Sets fused_modules. Throws naming the tensor when the rows do not add up.
void split_fused_modules(Adapter& adapter, const ModelConfig& c);
// The inverse, for writing: the parts of a fused module (all of them adapted, with one A) joined again.
// An adapter without fused_modules is returned as it is.
Adapter join_fused_modules(const Adapter& adapter);
// Tensors named as the files name them (PEFT keys "...self_attn.qkv_proj.lora_B.weight", whole weights
// "model.layers.N.mlp.gate_up_proj.weight"), with every tensor of a fused module also under its parts' names: A and
// AdaLoRA's E as they are, B, DoRA's magnitude and whole weights by the part's rows. For reading back what a
// TrainableModel of a fused_linears model saved (its params are named after the parts).
std::map<std::string, Tensor> with_fused_parts(std::map<std::string, Tensor> tensors, const ModelConfig& c);
std::string module_path(int64_t layer, LinearSite site);  // "model.layers.3.mlp.up_proj"
const char* site_module_name(LinearSite site);             // "mlp.up_proj"
const char* site_gguf_name(LinearSite site);               // "ffn_up" ("output" for Head)

// The base model's weight [out, in] of a linear module (the lm_head for Head) and its bias (may be empty).
const Tensor& base_linear_weight(const Model& base, const ModuleRef& m);
const Tensor& base_linear_bias(const Model& base, const ModuleRef& m);
Tensor& base_linear_weight(Model& model, const ModuleRef& m);
Tensor& base_linear_bias(Model& model, const ModuleRef& m);  // throws for a module that never has a bias

// The plain LoRA computing the same update as an AdaLoRA adapter: A ← diag(E)·A with the pruned triplets
// (E = 0) left out, modules without a triplet left out, scalings unchanged, and a LoRA config that
// describes the result (describe_factors). Any other adapter is returned as it is.
Adapter as_plain_lora(const Adapter& adapter);

// The configuration that describes the adapter's factors as PEFT would: r and lora_alpha from the most
// common rank and scaling, rank_pattern / alpha_pattern (full module paths) where a module differs, and
// target_modules naming every adapted module kind. `base` supplies task type, bias mode and the rest.
LoraConfig describe_factors(const Adapter& adapter, const LoraConfig& base);

// Throws FormatError naming the adapter's source and the first tensor that does not fit `base`: a module
// the model does not have (a layer past its last), a shape that differs, a missing partner tensor, a
// targeted module without tensors, or (GGUF) another architecture. Equal-to-base embedding_layers are
// dropped here (they change nothing).
void check_adapter_fits(Adapter& adapter, const Model& base);

// The GGUF architecture name of a model ("llama" for llama and mistral, "qwen2", "qwen3", "smollm3").
std::string gguf_architecture(const ModelConfig& config);

// A tensor's name in the adapter's own file, for error messages: the PEFT key
// ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") or the GGUF name
// ("blk.0.attn_q.weight.lora_a"). `part`: "lora_A", "lora_B", "lora_E" (AdaLoRA: "...q_proj.lora_A", no
// ".weight"), "lora_magnitude_vector", "bias", "weight".
std::string adapter_tensor_name(const Adapter& adapter, const std::string& module, const std::string& part);

}  // namespace lora
