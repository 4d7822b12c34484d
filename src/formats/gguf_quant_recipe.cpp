#include "formats/gguf_quant_recipe.h"

#include <cctype>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/ggml_quant.h"
#include "formats/weight_names.h"

namespace lora {

namespace {

constexpr GGUFQuantRecipe kRecipes[] = {
    {"q4_0", DType::Q4_0, 2},   {"q4_1", DType::Q4_1, 3},   {"q8_0", DType::Q8_0, 7},   {"q5_0", DType::Q5_0, 8},
    {"q5_1", DType::Q5_1, 9},   {"q2_k", DType::Q2_K, 10},  {"q3_k_s", DType::Q3_K, 11}, {"q3_k_m", DType::Q3_K, 12},
    {"q3_k_l", DType::Q3_K, 13}, {"q4_k_s", DType::Q4_K, 14}, {"q4_k_m", DType::Q4_K, 15}, {"q5_k_s", DType::Q5_K, 16},
    {"q5_k_m", DType::Q5_K, 17}, {"q6_k", DType::Q6_K, 18},  {"iq4_nl", DType::IQ4_NL, 25}, {"iq4_xs", DType::IQ4_XS, 30},
};

bool is(const GGUFQuantRecipe& r, const char* name) { return std::string(r.name) == name; }

// llama.cpp's choice of layers that get more bits: the first and last eighth, and every third between.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// The type for a tensor whose rows are not whole blocks of `t`.
DType fallback(DType t, int64_t row_length) {
  DType f;
  switch (t) {
    case DType::Q2_K: case DType::Q3_K: case DType::IQ4_XS: f = DType::IQ4_NL; break;
    case DType::Q4_K: f = DType::Q5_0; break;
    case DType::Q5_K: f = DType::Q5_1; break;
    case DType::Q6_K: f = DType::Q8_0; break;
    default: f = DType::F16; break;
  }
  return f != DType::F16 && row_length % ggml_block(f).elements != 0 ? DType::F16 : f;
}

// "blk.12.attn_v.weight" -> (12, "attn_v.weight"); other names -> (-1, name).
std::pair<int64_t, std::string> split_layer(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return {-1, name};
  const size_t dot = name.find('.', 4);
  return {std::stoll(name.substr(4, dot - 4)), name.substr(dot + 1)};
}

}  // namespace

const GGUFQuantRecipe& gguf_quant_recipe(const std::string& name) {
  std::string n;
  for (char c : name) n += char(std::tolower(static_cast<unsigned char>(c)));
  for (const GGUFQuantRecipe& r : kRecipes)
    if (n == r.name) return r;
  std::string all;
  for (const GGUFQuantRecipe& r : kRecipes) all += std::string(all.empty() ? "" : ", ") + r.name;
  fail("unknown GGUF quantization type '{}' (expected one of {})", name, all);
}

std::vector<std::string> gguf_quant_recipe_names() {
  std::vector<std::string> v;
  for (const GGUFQuantRecipe& r : kRecipes) v.push_back(r.name);
  return v;
}

DType gguf_tensor_type(const GGUFQuantRecipe& r, const std::string& gguf_name, int64_t row_length,
                       const ModelConfig& c) {
  const auto [layer, tensor] = split_layer(gguf_name);
  const int64_t n_layers = c.num_hidden_layers;
  const int64_t n_gqa = c.num_key_value_heads > 0 ? c.num_attention_heads / c.num_key_value_heads : 1;
  DType t = r.base;
  if (tensor == "output.weight") {
    if (row_length % ggml_block(t).elements != 0) t = DType::Q8_0;
    else if (t != DType::Q8_0) t = DType::Q6_K;
  } else if (tensor == "attn_v.weight") {
    if (is(r, "q2_k")) t = n_gqa >= 4 ? DType::Q4_K : DType::Q3_K;
    else if (is(r, "q3_k_m")) t = layer < 2 ? DType::Q5_K : DType::Q4_K;
    else if (is(r, "q3_k_l")) t = DType::Q5_K;
    else if ((is(r, "iq4_nl") || is(r, "iq4_xs")) && n_gqa >= 4) t = DType::Q5_K;
    else if ((is(r, "q4_k_m") || is(r, "q5_k_m")) && use_more_bits(layer, n_layers)) t = DType::Q6_K;
    else if (is(r, "q4_k_s") && layer < 4) t = DType::Q5_K;
  } else if (tensor == "ffn_down.weight") {
    if (is(r, "q2_k")) t = DType::Q3_K;
    else if (is(r, "q3_k_m")) t = layer < n_layers / 16 ? DType::Q5_K : DType::Q4_K;
    else if (is(r, "q3_k_l")) t = DType::Q5_K;
    else if (is(r, "q4_k_m")) t = use_more_bits(layer, n_layers) ? DType::Q6_K : t;
    else if (layer < n_layers / 8 && (is(r, "iq4_nl") || is(r, "iq4_xs"))) t = DType::Q5_K;
    else if (is(r, "q5_k_m") && use_more_bits(layer, n_layers)) t = DType::Q6_K;
    else if (is(r, "q4_k_s") && layer < n_layers / 8) t = DType::Q5_K;
  } else if (tensor == "attn_qkv.weight") {  // (Phi-3's fused q|k|v)
    if (is(r, "q3_k_m") || is(r, "q3_k_l")) t = DType::Q4_K;
    else if (is(r, "q4_k_m")) t = DType::Q5_K;
    else if (is(r, "q5_k_m")) t = DType::Q6_K;
  } else if (tensor == "attn_output.weight") {
    if (is(r, "q2_k")) t = DType::Q3_K;
    else if (is(r, "q3_k_m")) t = DType::Q4_K;
    else if (is(r, "q3_k_l")) t = DType::Q5_K;
  }
  return row_length % ggml_block(t).elements == 0 ? t : fallback(t, row_length);
}

GGUFQuantSummary quantize_model_for_gguf(Model& m, const GGUFQuantRecipe& recipe) {
  GGUFQuantSummary summary;
  auto requantize = [&](Tensor& w, const std::string& gguf_name) {
    const DType t = gguf_tensor_type(recipe, gguf_name, w.dim(-1), m.config);
    const Tensor original = w;
    const Tensor source = w.quantized() ? w.to(DType::F32) : w;
    w = t == DType::F16 ? source.to(DType::F16) : ggml_quantize_tensor(source, t);
    // read once: a mapped file's pages of it need not stay resident (the model is quantized a tensor at a time)
    release_resident_pages(original.data(), original.nbytes());
    auto it = summary.tensors_per_type.begin();
    while (it != summary.tensors_per_type.end() && it->first != t) ++it;
    if (it == summary.tensors_per_type.end()) summary.tensors_per_type.emplace_back(t, 1);
    else ++it->second;
    summary.bytes += w.nbytes();
    summary.elements += w.numel();
  };
  ModelWeights& w = m.weights;
  const bool tied = w.lm_head.empty() || w.lm_head.data() == w.tok_embeddings.data();
  // With a tied head the embedding is also the output matrix, and llama.cpp quantizes it as one.
  requantize(w.tok_embeddings, tied ? "output.weight" : "token_embd.weight");
  if (tied) w.lm_head = w.tok_embeddings;
  else requantize(w.lm_head, "output.weight");
  const std::vector<LayerTensorSpec> specs = layer_tensor_specs(m.config);
  for (size_t l = 0; l < w.layers.size(); ++l)
    for (const LayerTensorSpec& s : specs)
      if (s.kind == WeightKind::Linear) requantize(w.layers[l].*s.member, gguf_layer_name(int64_t(l), s));
  return summary;
}

}  // namespace lora
