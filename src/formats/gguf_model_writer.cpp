#include "formats/gguf_model_writer.h"

#include <cmath>
#include <filesystem>
#include <functional>

#include "core/error.h"
#include "core/quant.h"
#include "formats/gguf_model.h"
#include "formats/gguf_writer.h"
#include "formats/rope_layout.h"
#include "kernels/rope.h"
#include "formats/weight_names.h"
#include "model/family.h"
#include "tokenizer/tokenizer.h"

namespace lora {

namespace {

const ModelFamily& family_of(const ModelConfig& c) {
  const ModelFamily& f = model_family(c.model_type);
  // GGUF has no key for the NoPE layers: llama.cpp's smollm3 graph takes every 4th, and nothing else can be written.
  if (f.nope_interval > 0 && c.no_rope_layers != nope_layers(c.num_hidden_layers, f.nope_interval))
    fail("model type '{}' with RoPE skipped on layers other than every {}th cannot be written as GGUF (llama.cpp fixes "
         "that pattern)", c.model_type, f.nope_interval);
  if (f.nope_interval == 0 && !c.no_rope_layers.empty())
    fail("model type '{}' with layers without RoPE cannot be written as GGUF", c.model_type);
  if (c.gemma_block) {  // what llama.cpp's gemma2 / gemma3 graphs fix (see gguf_model.cpp's read_gemma_keys)
    if (c.layer_types != sliding_layer_types(c.num_hidden_layers, f.sliding_window_pattern))
      fail("{} with layer_types other than every {}th layer global cannot be written as GGUF (llama.cpp fixes that "
           "pattern)", c.model_type, f.sliding_window_pattern);
    if (f.default_attn_softcap == 0 && (c.attn_logit_softcapping > 0 || c.final_logit_softcapping > 0))
      fail("{} with logit soft-capping cannot be written as GGUF: llama.cpp's {} graph has none", c.model_type, f.gguf_arch);
    if (f.default_attn_softcap > 0 && (c.attn_logit_softcapping <= 0 || c.final_logit_softcapping <= 0))
      fail("{} without logit soft-capping cannot be written as GGUF: llama.cpp's {} graph always caps", c.model_type,
           f.gguf_arch);
    const float scalar = gguf_query_pre_attn_scalar(c);
    if (c.query_pre_attn_scalar != scalar)
      fail("{} with query_pre_attn_scalar {} cannot be written as GGUF: llama.cpp scales attention by {}^-1/2", c.model_type,
           c.query_pre_attn_scalar, scalar);
  }
  return f;
}

// llama.cpp's file type (LLAMA_FTYPE_*): what most of the weights are.
uint32_t file_type(DType t) {
  switch (t) {
    case DType::F32: return 0;   // ALL_F32
    case DType::F16: return 1;   // MOSTLY_F16
    case DType::BF16: return 32; // MOSTLY_BF16
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q8_0: return 7;
    case DType::Q5_0: return 8;
    case DType::Q5_1: return 9;
    case DType::Q2_K: return 10;
    case DType::Q3_K: return 12;  // Q3_K_M
    case DType::Q4_K: return 15;  // Q4_K_M
    case DType::Q5_K: return 17;  // Q5_K_M
    case DType::Q6_K: return 18;
    case DType::IQ4_NL: return 25;
    case DType::IQ4_XS: return 30;
    default: fail("GGUF model weights cannot be written as {}", dtype_name(t));
  }
}

// Llama 3 RoPE scaling as llama.cpp carries it: one divisor per frequency in rope_freqs.weight (the
// inverse of what gguf_model.cpp reads).
Tensor llama3_rope_freqs(const ModelConfig& c) {
  const std::vector<double> divisors = rope_freq_divisors(c);
  Tensor t(DType::F32, {int64_t(divisors.size())});
  for (size_t i = 0; i < divisors.size(); ++i) t.f32()[i] = float(divisors[i]);
  return t;
}

Tensor as(const Tensor& t, DType d) { return t.dtype() == d ? t : t.to(d); }

// Each tensor converted (and RoPE-permuted) only while it is written: one copy at a time, not a model's worth.
void add(GGUFWriter& g, const std::string& name, const Tensor& t, DType d, std::function<Tensor(Tensor)> then = {}) {
  if (t.dtype() == d && !then) return g.add_tensor(name, t);
  g.add_tensor_lazy(name, d, t.shape(), [t, d, then] { return then ? then(as(t, d)) : as(t, d); });
}

}  // namespace

void save_gguf_model(const Model& model, const std::string& path, std::optional<DType> dtype,
                     std::optional<uint32_t> ftype) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  if (!model.tokenizer) fail("{}: the model has no tokenizer, which a GGUF model file must carry (pass --tokenizer)", path);
  const ModelFamily& family = family_of(c);
  const std::string arch = family.gguf_arch;
  const bool interleaved = family.interleaved_rope;  // qwen2/qwen3 keep Hugging Face's order (NEOX RoPE in llama.cpp)
  const bool tied = w.lm_head.data() == w.tok_embeddings.data();
  if (dtype && is_quantized(*dtype)) fail("{}: GGUF weights are converted to f32, f16 or bf16 here, not {}", path, dtype_name(*dtype));
  // Without a dtype every weight keeps its own (ggml-quantized ones their blocks); bitsandbytes'
  // formats have no GGUF type and are decoded to their source dtype.
  auto weight_dtype = [&](const Tensor& t) {
    if (dtype) return *dtype;
    if (t.quantized() && !is_ggml_quant(t.dtype())) return t.quant()->source_dtype == DType::BF16 ? DType::BF16 : DType::F32;
    return t.dtype();
  };
  const DType weight_type = weight_dtype(w.layers.empty() ? w.tok_embeddings : w.layers[0].wq);
  GGUFWriter g;
  const std::string p = arch + ".";
  g.set_string("general.architecture", arch);
  g.set_string("general.type", "model");
  g.set_string("general.name", std::filesystem::path(path).stem().string());
  g.set_u32("general.file_type", ftype.value_or(file_type(weight_type)));
  g.set_u32(p + "block_count", uint32_t(c.num_hidden_layers));
  g.set_u32(p + "context_length", uint32_t(c.max_position_embeddings));
  g.set_u32(p + "embedding_length", uint32_t(c.hidden_size));
  g.set_u32(p + "feed_forward_length", uint32_t(c.intermediate_size));
  g.set_u32(p + "attention.head_count", uint32_t(c.num_attention_heads));
  g.set_u32(p + "attention.head_count_kv", uint32_t(c.num_key_value_heads));
  g.set_f32(p + "rope.freq_base", c.rope_theta);
  g.set_f32(p + "attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  if (c.head_dim != c.hidden_size / c.num_attention_heads) {
    g.set_u32(p + "attention.key_length", uint32_t(c.head_dim));
    g.set_u32(p + "attention.value_length", uint32_t(c.head_dim));
  }
  g.set_u32(p + "rope.dimension_count", uint32_t(c.rope_dim()));
  g.set_u32(p + "vocab_size", uint32_t(c.vocab_size));
  if (c.rope_scaling.type == "linear") {
    g.set_string(p + "rope.scaling.type", "linear");
    g.set_f32(p + "rope.scaling.factor", c.rope_scaling.factor);
  } else if (c.rope_scaling.type == "longrope") {  // (the factor lists are tensors, below)
    g.set_f32(p + "rope.scaling.attn_factor", c.rope_scaling.attention_factor);
    g.set_u32(p + "rope.scaling.original_context_length", uint32_t(c.rope_scaling.original_max_position_embeddings));
  } else if (!c.rope_scaling.type.empty() && c.rope_scaling.type != "llama3") {
    fail("{}: RoPE scaling '{}' cannot be written as GGUF here (linear, llama3)", path, c.rope_scaling.type);
  }
  if (family.fused_linears && c.has_sliding_layers()) g.set_u32(p + "attention.sliding_window", uint32_t(c.sliding_window));
  if (c.gemma_block) {
    g.set_u32(p + "attention.sliding_window", uint32_t(c.sliding_window));
    if (family.local_rope_base) g.set_f32(p + "rope.freq_base_swa", c.rope_local_base_freq);
    if (family.default_attn_softcap > 0) {
      g.set_f32(p + "attn_logit_softcapping", c.attn_logit_softcapping);
      g.set_f32(p + "final_logit_softcapping", c.final_logit_softcapping);
    }
  }
  write_gguf_tokenizer(*model.tokenizer, g);

  add(g, "token_embd.weight", w.tok_embeddings, weight_dtype(w.tok_embeddings));
  if (c.rope_scaling.type == "llama3") g.add_tensor("rope_freqs.weight", llama3_rope_freqs(c));
  if (c.rope_scaling.type == "longrope") {
    auto factors = [](const std::vector<float>& v) {
      Tensor t(DType::F32, {int64_t(v.size())});
      std::copy(v.begin(), v.end(), t.f32());
      return t;
    };
    g.add_tensor("rope_factors_long.weight", factors(c.rope_scaling.long_factor));
    g.add_tensor("rope_factors_short.weight", factors(c.rope_scaling.short_factor));
  }
  add(g, "output_norm.weight", w.norm, DType::F32);
  if (!tied) add(g, "output.weight", w.lm_head, weight_dtype(w.lm_head));
  const std::vector<LayerTensorSpec> specs = layer_tensor_specs(c);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    for (const LayerTensorSpec& s : specs) {
      if (s.fused_part > 0) continue;
      if (s.fused_part == 0) {  // Phi-3's attn_qkv / ffn_up, made from the parts while written
        std::vector<Tensor> parts;
        for (const LayerTensorSpec& part : fused_group(s, specs)) {
          parts.push_back(w.layers[size_t(l)].*part.member);
          if (parts.back().empty()) fail("{}: cannot save: layer {} has no part {} of {}", path, l, part.fused_part, s.gguf_name);
        }
        const DType d = weight_dtype(parts[0]);
        for (const Tensor& t : parts)
          if (weight_dtype(t) != d)
            fail("{}: the parts of layer {}'s {} have different types ({} and {})", path, l, s.gguf_name,
                 dtype_name(d), dtype_name(weight_dtype(t)));
        g.add_tensor_lazy(gguf_layer_name(l, s), d, fused_shape(s, c), [parts, d] {
          std::vector<Tensor> converted;
          for (const Tensor& t : parts) converted.push_back(as(t, d));
          return Tensor::concat_rows(converted);
        });
        continue;
      }
      const Tensor& t = w.layers[size_t(l)].*s.member;
      if (t.empty()) fail("{}: cannot save: layer {} has no {}", path, l, s.hf_name);
      std::function<Tensor(Tensor)> permute;
      if (interleaved && s.rope != RopeRows::None) {
        const int64_t heads = rope_heads(s, c);
        permute = [heads](Tensor x) { return rope_half_to_interleaved(x, heads); };
      }
      add(g, gguf_layer_name(l, s), t, s.kind == WeightKind::Linear ? weight_dtype(t) : DType::F32, permute);
    }
  g.write(path);
}

}  // namespace lora
