#include "formats/weight_names.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace lora {

std::vector<LayerTensorSpec> layer_tensor_specs(const ModelConfig& config) {
  using K = WeightKind;
  using R = RopeRows;
  if (config.gemma_block) {  // Gemma's post_attention_layernorm is the attention output's, not the MLP input's
    std::vector<LayerTensorSpec> gemma = {
        {"input_layernorm.weight", "attn_norm.weight", &LayerWeights::attn_norm, K::Norm, R::None},
        {"self_attn.q_proj.weight", "attn_q.weight", &LayerWeights::wq, K::Linear, R::QueryHeads},
        {"self_attn.k_proj.weight", "attn_k.weight", &LayerWeights::wk, K::Linear, R::KeyValueHeads},
        {"self_attn.v_proj.weight", "attn_v.weight", &LayerWeights::wv, K::Linear, R::None},
        {"self_attn.o_proj.weight", "attn_output.weight", &LayerWeights::wo, K::Linear, R::None},
        {"self_attn.q_norm.weight", "attn_q_norm.weight", &LayerWeights::q_norm, K::Norm, R::None},
        {"self_attn.k_norm.weight", "attn_k_norm.weight", &LayerWeights::k_norm, K::Norm, R::None},
        {"post_attention_layernorm.weight", "post_attention_norm.weight", &LayerWeights::post_attn_norm, K::Norm, R::None},
        {"pre_feedforward_layernorm.weight", "ffn_norm.weight", &LayerWeights::ffn_norm, K::Norm, R::None},
        {"mlp.gate_proj.weight", "ffn_gate.weight", &LayerWeights::w_gate, K::Linear, R::None},
        {"mlp.up_proj.weight", "ffn_up.weight", &LayerWeights::w_up, K::Linear, R::None},
        {"mlp.down_proj.weight", "ffn_down.weight", &LayerWeights::w_down, K::Linear, R::None},
        {"post_feedforward_layernorm.weight", "post_ffw_norm.weight", &LayerWeights::post_ffn_norm, K::Norm, R::None},
    };
    if (!config.qk_norm) gemma.erase(gemma.begin() + 5, gemma.begin() + 7);  // Gemma 2 has no head norms
    return gemma;
  }
  if (config.fused_linears) {  // Phi-3: q|k|v and gate|up as one matrix each, in config.json's and in GGUF's files
    return {
        {"input_layernorm.weight", "attn_norm.weight", &LayerWeights::attn_norm, K::Norm, R::None},
        {"self_attn.qkv_proj.weight", "attn_qkv.weight", &LayerWeights::wq, K::Linear, R::QueryHeads, 0},
        {"self_attn.qkv_proj.weight", "attn_qkv.weight", &LayerWeights::wk, K::Linear, R::KeyValueHeads, 1},
        {"self_attn.qkv_proj.weight", "attn_qkv.weight", &LayerWeights::wv, K::Linear, R::None, 2},
        {"self_attn.o_proj.weight", "attn_output.weight", &LayerWeights::wo, K::Linear, R::None},
        {"post_attention_layernorm.weight", "ffn_norm.weight", &LayerWeights::ffn_norm, K::Norm, R::None},
        {"mlp.gate_up_proj.weight", "ffn_up.weight", &LayerWeights::w_gate, K::Linear, R::None, 0},
        {"mlp.gate_up_proj.weight", "ffn_up.weight", &LayerWeights::w_up, K::Linear, R::None, 1},
        {"mlp.down_proj.weight", "ffn_down.weight", &LayerWeights::w_down, K::Linear, R::None},
    };
  }
  std::vector<LayerTensorSpec> specs = {
      {"input_layernorm.weight", "attn_norm.weight", &LayerWeights::attn_norm, K::Norm, R::None},
      {"self_attn.q_proj.weight", "attn_q.weight", &LayerWeights::wq, K::Linear, R::QueryHeads},
      {"self_attn.k_proj.weight", "attn_k.weight", &LayerWeights::wk, K::Linear, R::KeyValueHeads},
      {"self_attn.v_proj.weight", "attn_v.weight", &LayerWeights::wv, K::Linear, R::None},
      {"self_attn.o_proj.weight", "attn_output.weight", &LayerWeights::wo, K::Linear, R::None},
      {"post_attention_layernorm.weight", "ffn_norm.weight", &LayerWeights::ffn_norm, K::Norm, R::None},
      {"mlp.gate_proj.weight", "ffn_gate.weight", &LayerWeights::w_gate, K::Linear, R::None},
      {"mlp.up_proj.weight", "ffn_up.weight", &LayerWeights::w_up, K::Linear, R::None},
      {"mlp.down_proj.weight", "ffn_down.weight", &LayerWeights::w_down, K::Linear, R::None},
  };
  if (config.attention_bias) {
    specs.push_back({"self_attn.q_proj.bias", "attn_q.bias", &LayerWeights::bq, K::Bias, R::QueryHeads});
    specs.push_back({"self_attn.k_proj.bias", "attn_k.bias", &LayerWeights::bk, K::Bias, R::KeyValueHeads});
    specs.push_back({"self_attn.v_proj.bias", "attn_v.bias", &LayerWeights::bv, K::Bias, R::None});
  }
  if (config.qk_norm) {  // (only NEOX-RoPE families have them: their GGUF keeps these vectors' order)
    specs.push_back({"self_attn.q_norm.weight", "attn_q_norm.weight", &LayerWeights::q_norm, K::Norm, R::None});
    specs.push_back({"self_attn.k_norm.weight", "attn_k_norm.weight", &LayerWeights::k_norm, K::Norm, R::None});
  }
  return specs;
}

std::vector<int64_t> expected_shape(const LayerTensorSpec& spec, const ModelConfig& c) {
  const auto m = spec.member;
  const int64_t D = c.hidden_size, H = c.intermediate_size;
  if (m == &LayerWeights::attn_norm || m == &LayerWeights::ffn_norm || m == &LayerWeights::post_attn_norm ||
      m == &LayerWeights::post_ffn_norm)
    return {D};
  if (m == &LayerWeights::q_norm || m == &LayerWeights::k_norm) return {c.head_dim};
  if (m == &LayerWeights::wq) return {c.q_dim(), D};
  if (m == &LayerWeights::wk || m == &LayerWeights::wv) return {c.kv_dim(), D};
  if (m == &LayerWeights::wo) return {D, c.q_dim()};
  if (m == &LayerWeights::w_gate || m == &LayerWeights::w_up) return {H, D};
  if (m == &LayerWeights::w_down) return {D, H};
  if (m == &LayerWeights::bq) return {c.q_dim()};
  return {c.kv_dim()};  // bk, bv
}

std::vector<LayerTensorSpec> fused_group(const LayerTensorSpec& spec, const std::vector<LayerTensorSpec>& specs) {
  if (spec.fused_part < 0) return {spec};
  std::vector<LayerTensorSpec> group;
  for (const LayerTensorSpec& s : specs)
    if (s.fused_part >= 0 && std::string(s.hf_name) == spec.hf_name) group.push_back(s);
  std::sort(group.begin(), group.end(), [](const auto& a, const auto& b) { return a.fused_part < b.fused_part; });
  return group;
}

std::pair<int64_t, int64_t> fused_rows(const LayerTensorSpec& spec, const ModelConfig& c) {
  int64_t begin = 0;
  for (const LayerTensorSpec& s : fused_group(spec, layer_tensor_specs(c))) {
    const int64_t rows = expected_shape(s, c)[0];
    if (s.member == spec.member) return {begin, begin + rows};
    begin += rows;
  }
  fail("{} is not part of the fused tensor it names", spec.hf_name);
}

std::vector<int64_t> fused_shape(const LayerTensorSpec& spec, const ModelConfig& c) {
  std::vector<int64_t> shape = expected_shape(spec, c);
  shape[0] = 0;
  for (const LayerTensorSpec& s : fused_group(spec, layer_tensor_specs(c))) shape[0] += expected_shape(s, c)[0];
  return shape;
}

void assign_fused_parts(LayerWeights& w, const Tensor& whole, const LayerTensorSpec& spec,
                        const std::vector<LayerTensorSpec>& specs, const ModelConfig& c) {
  for (const LayerTensorSpec& part : fused_group(spec, specs)) {
    const auto [begin, end] = fused_rows(part, c);
    w.*part.member = whole.slice_rows(begin, end);
  }
}

int64_t rope_heads(const LayerTensorSpec& spec, const ModelConfig& c) {
  switch (spec.rope) {
    case RopeRows::QueryHeads: return c.num_attention_heads;
    case RopeRows::KeyValueHeads: return c.num_key_value_heads;
    case RopeRows::None: return 0;
  }
  return 0;
}

std::string hf_layer_name(int64_t layer, const LayerTensorSpec& spec) {
  return fmt::format("model.layers.{}.{}", layer, spec.hf_name);
}

std::string gguf_layer_name(int64_t layer, const LayerTensorSpec& spec) {
  return fmt::format("blk.{}.{}", layer, spec.gguf_name);
}

void check_shape(const std::string& path, const std::string& name, const Tensor& t, const std::vector<int64_t>& expected) {
  if (t.shape() != expected) {
    const Tensor want(t.dtype(), expected, nullptr, nullptr);
    fail_format(path, "tensor '{}' has shape {}, expected {} from the config", name, t.shape_str(), want.shape_str());
  }
}

}  // namespace lora
