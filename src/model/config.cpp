#include "model/config.h"

#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "core/error.h"
#include "model/family.h"

namespace lora {

namespace {

using nlohmann::json;

bool present(const json& j, const char* key) { return j.contains(key) && !j.at(key).is_null(); }

int64_t get_int(const json& j, const char* key, const std::string& path) {
  const json& v = j.at(key);
  if (!v.is_number_integer()) fail_format(path, "field '{}' must be an integer, found {}", key, v.dump());
  return v.get<int64_t>();
}

int64_t required_int(const json& j, const char* key, const std::string& path) {
  if (!present(j, key)) fail_format(path, "missing required field '{}'", key);
  return get_int(j, key, path);
}

int64_t optional_int(const json& j, const char* key, int64_t fallback, const std::string& path) {
  return present(j, key) ? get_int(j, key, path) : fallback;
}

// Every number of a config is held as a float: one past its range is refused here (the cast would be undefined).
float optional_float(const json& j, const char* key, double fallback, const std::string& path) {
  if (!present(j, key)) return float(fallback);
  const json& v = j.at(key);
  if (!v.is_number()) fail_format(path, "field '{}' must be a number, found {}", key, v.dump());
  const double d = v.get<double>();
  if (!(std::fabs(d) <= double(std::numeric_limits<float>::max())))
    fail_format(path, "field '{}' = {} is out of range", key, v.dump());
  return float(d);
}

bool optional_bool(const json& j, const char* key, bool fallback, const std::string& path) {
  if (!present(j, key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_boolean()) fail_format(path, "field '{}' must be true or false, found {}", key, v.dump());
  return v.get<bool>();
}

// bos/eos ids are an int, null, or (Llama 3.1 eos) a list of ints of which the first is the main one.
int64_t token_id(const json& j, const char* key, int64_t fallback, const std::string& path) {
  if (!present(j, key)) return fallback;
  const json& v = j.at(key);
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();
  if (v.is_number_integer()) return v.get<int64_t>();
  fail_format(path, "field '{}' must be a token id or a list of them, found {}", key, v.dump());
}

RopeScaling parse_rope_scaling(const json& j, const std::string& path) {
  RopeScaling rs;
  if (!j.is_object()) fail_format(path, "field 'rope_scaling' must be an object or null, found {}", j.dump());
  // transformers renamed "type" to "rope_type"; files in the wild carry either or both.
  std::string type;
  if (present(j, "rope_type")) type = j.at("rope_type").is_string() ? j.at("rope_type").get<std::string>() : "";
  else if (present(j, "type")) type = j.at("type").is_string() ? j.at("type").get<std::string>() : "";
  if (type == "default") return rs;
  if (type == "su") type = "longrope";  // (Phi-3's first configs)
  if (type != "llama3" && type != "linear" && type != "longrope")
    fail_format(path, "rope_scaling type '{}' is not supported (supported: llama3, linear, longrope)", type);
  rs.type = type;
  if (type == "longrope") {
    auto factors = [&](const char* key) {
      if (!present(j, key) || !j.at(key).is_array())
        fail_format(path, "rope_scaling longrope needs a list '{}'", key);
      std::vector<float> v;
      for (const json& e : j.at(key)) {
        if (!e.is_number() || !(e.get<double>() > 0.0) || !(e.get<double>() <= 1e30))
          fail_format(path, "rope_scaling '{}' must hold positive numbers, found {}", key, e.dump());
        v.push_back(float(e.get<double>()));
      }
      return v;
    };
    rs.short_factor = factors("short_factor");
    rs.long_factor = factors("long_factor");
    rs.attention_factor = present(j, "attention_factor") ? optional_float(j, "attention_factor", 1.0, path) : 0.0f;
    return rs;  // (its original_max_position_embeddings is config.json's top-level one)
  }
  rs.factor = optional_float(j, "factor", 1.0, path);
  rs.low_freq_factor = optional_float(j, "low_freq_factor", rs.low_freq_factor, path);
  rs.high_freq_factor = optional_float(j, "high_freq_factor", rs.high_freq_factor, path);
  rs.original_max_position_embeddings =
      optional_int(j, "original_max_position_embeddings", rs.original_max_position_embeddings, path);
  return rs;
}

// SmolLM3: "no_rope_layers" as written, else transformers' default from "no_rope_layer_interval" (layer l keeps
// RoPE unless (l + 1) is a multiple of the interval).
std::vector<int64_t> parse_no_rope_layers(const json& j, int64_t default_interval, int64_t n_layers, const std::string& path) {
  std::vector<int64_t> flags;
  if (present(j, "no_rope_layers")) {
    const json& v = j.at("no_rope_layers");
    if (!v.is_array()) fail_format(path, "field 'no_rope_layers' must be a list of 0/1 per layer, found {}", v.dump());
    for (const json& e : v) {
      if (!e.is_number_integer() || (e.get<int64_t>() != 0 && e.get<int64_t>() != 1))
        fail_format(path, "field 'no_rope_layers' must hold 0 or 1 per layer, found {}", e.dump());
      flags.push_back(e.get<int64_t>());
    }
    if (int64_t(flags.size()) != n_layers)
      fail_format(path, "field 'no_rope_layers' has {} entries, expected num_hidden_layers = {}", flags.size(), n_layers);
    return flags;
  }
  const int64_t interval = optional_int(j, "no_rope_layer_interval", default_interval, path);
  if (interval < 1) fail_format(path, "field 'no_rope_layer_interval' must be positive, found {}", interval);
  return nope_layers(n_layers, interval);
}

// A soft-capping field: null (0, none), a positive number, or absent (the family's default).
float parse_softcap(const json& j, const char* key, double default_value, const std::string& path) {
  if (!j.contains(key)) return float(default_value);
  if (j.at(key).is_null()) return 0.0f;
  const float v = optional_float(j, key, default_value, path);
  if (!(v > 0.0f)) fail_format(path, "field '{}' must be positive or null, found {}", key, j.at(key).dump());
  return v;
}

// Gemma 2's and 3's own fields, with Gemma2Config's / Gemma3TextConfig's defaults.
void parse_gemma_fields(const json& j, const ModelFamily& family, ModelConfig& c, const std::string& path) {
  c.gemma_block = true;
  c.attn_logit_softcapping = parse_softcap(j, "attn_logit_softcapping", family.default_attn_softcap, path);
  c.final_logit_softcapping = parse_softcap(j, "final_logit_softcapping", family.default_final_softcap, path);
  if (present(j, "rope_parameters"))
    fail_format(path, "field 'rope_parameters' is not supported (give rope_theta, rope_local_base_freq, rope_scaling)");
  c.query_pre_attn_scalar = optional_float(j, "query_pre_attn_scalar", 256.0, path);
  c.sliding_window = optional_int(j, "sliding_window", 4096, path);
  c.rope_local_base_freq = family.local_rope_base ? optional_float(j, "rope_local_base_freq", 10000.0, path)
                                                  : c.rope_theta;
  if (present(j, "layer_types")) {
    const json& v = j.at("layer_types");
    if (!v.is_array()) fail_format(path, "field 'layer_types' must be a list of attention types per layer, found {}", v.dump());
    c.layer_types.clear();
    for (const json& e : v) {
      if (!e.is_string() || (e != "sliding_attention" && e != "full_attention"))
        fail_format(path, "field 'layer_types' must hold \"sliding_attention\" or \"full_attention\", found {}", e.dump());
      c.layer_types.push_back(e.get<std::string>());
    }
    if (int64_t(c.layer_types.size()) != c.num_hidden_layers)
      fail_format(path, "field 'layer_types' has {} entries, expected num_hidden_layers = {}", c.layer_types.size(),
                  c.num_hidden_layers);
  } else {
    const int64_t pattern = optional_int(j, "sliding_window_pattern", family.sliding_window_pattern, path);
    if (pattern < 1) fail_format(path, "field 'sliding_window_pattern' must be positive, found {}", pattern);
    c.layer_types = sliding_layer_types(c.num_hidden_layers, pattern);
  }
}

// LongRoPE's context: the factor set switches at config.json's top-level original_max_position_embeddings, and
// the attention factor follows from how far max_position_embeddings reaches past it (transformers' rule).
void set_longrope_context(const json& j, ModelConfig& c, const std::string& path) {
  RopeScaling& rs = c.rope_scaling;
  rs.original_max_position_embeddings =
      optional_int(j, "original_max_position_embeddings", c.max_position_embeddings, path);
  if (rs.original_max_position_embeddings <= 0)
    fail_format(path, "original_max_position_embeddings must be positive, found {}", rs.original_max_position_embeddings);
  rs.factor = float(double(c.max_position_embeddings) / double(rs.original_max_position_embeddings));
  if (rs.attention_factor == 0.0f)
    rs.attention_factor = longrope_attention_factor(c.max_position_embeddings, rs.original_max_position_embeddings);
}

// Phi-3's own fields: a sliding window over every layer (transformers' Phi3 masks every layer with it; null: none),
// and the rotary fraction, which must be whole (Phi-4-mini's 0.75 is not supported yet).
void parse_phi3_fields(const json& j, ModelConfig& c, const std::string& path) {
  const float rotary = optional_float(j, "partial_rotary_factor", 1.0, path);
  if (!(rotary > 0.0f && rotary <= 1.0f))
    fail_format(path, "field 'partial_rotary_factor' must be in (0, 1], found {}", j.at("partial_rotary_factor").dump());
  // transformers: int(head_dim * partial_rotary_factor) values of each head rotate (Phi-4-mini: 96 of 128)
  if (rotary != 1.0f) c.rotary_dim = int64_t(double(c.head_dim) * double(rotary));
  if (present(j, "sliding_window")) {
    c.sliding_window = get_int(j, "sliding_window", path);
    if (c.sliding_window <= 0) fail_format(path, "field 'sliding_window' must be positive or null, found {}", c.sliding_window);
    c.layer_types.assign(size_t(c.num_hidden_layers), "sliding_attention");
  }
}

// The shortest decimal that reads back as the same float: 1e-5f is written "1e-05" as transformers
// writes it, not 9.999999747378752e-06.
double shortest(float v) { return std::stod(fmt::format("{}", v)); }

}  // namespace

float longrope_attention_factor(int64_t extended, int64_t original) {
  const double factor = double(extended) / double(original);
  return factor <= 1.0 ? 1.0f : float(std::sqrt(1.0 + std::log(factor) / std::log(double(original))));
}

ModelConfig ModelConfig::from_hf_json(const json& j, const std::string& path) {
  if (!j.is_object()) fail_format(path, "expected a JSON object");
  ModelConfig c;

  const ModelFamily* family = nullptr;
  if (present(j, "architectures")) {
    const json& a = j.at("architectures");
    if (!a.is_array() || a.empty() || !a[0].is_string())
      fail_format(path, "field 'architectures' must be a non-empty list of names, found {}", a.dump());
    const std::string name = a[0].get<std::string>();
    family = family_by_architecture(name);
    if (!family) fail_format(path, "unsupported architecture '{}' (supported: {})", name, supported_architectures());
  }
  if (present(j, "model_type")) {
    if (!j.at("model_type").is_string()) fail_format(path, "field 'model_type' must be a string");
    const std::string type = j.at("model_type").get<std::string>();
    const ModelFamily* by_type = family_by_model_type(type);
    if (!by_type) fail_format(path, "unsupported model_type '{}' (supported: {})", type, supported_model_types());
    if (!family) family = by_type;
    else if (family != by_type)
      fail_format(path, "architecture '{}' does not match model_type '{}'", family->hf_architecture, type);
  }
  if (!family) fail_format(path, "missing required field 'architectures' (supported: {})", supported_architectures());
  c.architecture = family->hf_architecture;
  c.model_type = family->model_type;
  // Sliding-window attention (Qwen2/3's and SmolLM3's switch, off in their published configs) is not implemented.
  if (optional_bool(j, "use_sliding_window", false, path))
    fail_format(path, "field 'use_sliding_window' is true: sliding-window attention is not supported for {}", c.model_type);

  // Gemma 3's config names its activation hidden_activation (tanh-approximated GELU; transformers ignores a
  // hidden_act there); the others hidden_act (SiLU).
  const char* act_key = family->gemma_block ? "hidden_activation" : "hidden_act";
  const char* act = family->gemma_block ? "gelu_pytorch_tanh" : "silu";
  if (present(j, act_key) && j.at(act_key) != act)
    fail_format(path, "{} {} is not supported for {} (only {})", act_key, j.at(act_key).dump(), family->model_type, act);
  c.hidden_act = act;

  c.hidden_size = required_int(j, "hidden_size", path);
  c.intermediate_size = required_int(j, "intermediate_size", path);
  c.num_hidden_layers = required_int(j, "num_hidden_layers", path);
  ModelConfig::check_layer_count(c.num_hidden_layers, path);
  c.num_attention_heads = required_int(j, "num_attention_heads", path);
  c.vocab_size = required_int(j, "vocab_size", path);
  c.num_key_value_heads = optional_int(j, "num_key_value_heads", c.num_attention_heads, path);
  c.head_dim = optional_int(j, "head_dim", 0, path);
  if (c.head_dim == 0 && c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  c.max_position_embeddings =
      optional_int(j, "max_position_embeddings", family->default_max_position_embeddings, path);
  c.rms_norm_eps = optional_float(j, "rms_norm_eps", family->default_rms_norm_eps, path);
  c.rope_theta = optional_float(j, "rope_theta", family->default_rope_theta, path);
  if (present(j, "rope_scaling")) c.rope_scaling = parse_rope_scaling(j.at("rope_scaling"), path);
  if (c.rope_scaling.type == "longrope") set_longrope_context(j, c, path);
  c.tie_word_embeddings = optional_bool(j, "tie_word_embeddings", family->default_tie_word_embeddings, path);
  // Qwen2 always has q/k/v biases (its config has no switch for them).
  c.attention_bias = family->qkv_bias || optional_bool(j, "attention_bias", false, path);
  c.qk_norm = family->qk_norm;
  if (family->nope_interval > 0) c.no_rope_layers = parse_no_rope_layers(j, family->nope_interval, c.num_hidden_layers, path);
  if (family->gemma_block) parse_gemma_fields(j, *family, c, path);
  c.fused_linears = family->fused_linears;
  if (family->fused_linears) parse_phi3_fields(j, c, path);
  c.bos_token_id = token_id(j, "bos_token_id", c.bos_token_id, path);
  c.eos_token_id = token_id(j, "eos_token_id", c.eos_token_id, path);

  c.validate(path);
  return c;
}

json ModelConfig::to_hf_json() const {
  json j;
  j["architectures"] = json::array({architecture});
  j["model_type"] = model_type;
  j[gemma_block ? "hidden_activation" : "hidden_act"] = hidden_act;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["vocab_size"] = vocab_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = shortest(rms_norm_eps);
  j["rope_theta"] = shortest(rope_theta);
  if (rope_scaling.type.empty()) {
    j["rope_scaling"] = nullptr;
  } else if (rope_scaling.type == "longrope") {
    auto floats = [](const std::vector<float>& v) {
      json a = json::array();
      for (float x : v) a.push_back(shortest(x));
      return a;
    };
    j["rope_scaling"] = {{"type", "longrope"}, {"short_factor", floats(rope_scaling.short_factor)},
                         {"long_factor", floats(rope_scaling.long_factor)}};
    j["original_max_position_embeddings"] = rope_scaling.original_max_position_embeddings;
  } else {
    j["rope_scaling"] = {{"rope_type", rope_scaling.type}, {"factor", shortest(rope_scaling.factor)}};
    if (rope_scaling.type == "llama3") {
      j["rope_scaling"]["low_freq_factor"] = shortest(rope_scaling.low_freq_factor);
      j["rope_scaling"]["high_freq_factor"] = shortest(rope_scaling.high_freq_factor);
      j["rope_scaling"]["original_max_position_embeddings"] = rope_scaling.original_max_position_embeddings;
    }
  }
  j["tie_word_embeddings"] = tie_word_embeddings;
  if (!model_family(model_type).qkv_bias) j["attention_bias"] = attention_bias;
  if (!no_rope_layers.empty()) j["no_rope_layers"] = no_rope_layers;
  if (model_type == "qwen3" || model_type == "smollm3") j["use_sliding_window"] = false;
  if (fused_linears) j["sliding_window"] = has_sliding_layers() ? json(sliding_window) : json(nullptr);
  if (rope_dim() != head_dim) j["partial_rotary_factor"] = double(rotary_dim) / double(head_dim);
  if (gemma_block) {
    j["query_pre_attn_scalar"] = shortest(query_pre_attn_scalar);
    j["sliding_window"] = sliding_window;
    const ModelFamily& f = model_family(model_type);
    if (f.local_rope_base) j["rope_local_base_freq"] = shortest(rope_local_base_freq);
    j["layer_types"] = layer_types;
    // (transformers before layer_types read the pattern; written only when it says the same)
    if (layer_types == sliding_layer_types(num_hidden_layers, f.sliding_window_pattern))
      j["sliding_window_pattern"] = f.sliding_window_pattern;
    auto softcap = [](float v) { return v > 0 ? json(shortest(v)) : json(nullptr); };
    j["attn_logit_softcapping"] = softcap(attn_logit_softcapping);
    j["final_logit_softcapping"] = softcap(final_logit_softcapping);
  }
  j["bos_token_id"] = bos_token_id;
  j["eos_token_id"] = eos_token_id;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  return j;
}

void ModelConfig::check_layer_count(int64_t n, const std::string& path) {
  if (n <= 0 || n > kMaxLayers) fail_format(path, "num_hidden_layers = {} is out of range (expected 1..{})", n, kMaxLayers);
}

void ModelConfig::validate(const std::string& path) const {
  // Bounds keep every product of sizes far from int64 overflow and reject garbage headers early.
  auto check_range = [&](const char* name, int64_t v, int64_t max) {
    if (v <= 0 || v > max) fail_format(path, "{} = {} is out of range (expected 1..{})", name, v, max);
  };
  check_range("hidden_size", hidden_size, int64_t(1) << 20);
  check_range("intermediate_size", intermediate_size, int64_t(1) << 22);
  check_range("num_hidden_layers", num_hidden_layers, kMaxLayers);
  check_range("num_attention_heads", num_attention_heads, 4096);
  check_range("num_key_value_heads", num_key_value_heads, 4096);
  check_range("head_dim", head_dim, 16384);
  check_range("vocab_size", vocab_size, int64_t(1) << 24);
  check_range("max_position_embeddings", max_position_embeddings, int64_t(1) << 30);
  if (num_attention_heads % num_key_value_heads != 0)
    fail_format(path, "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", num_attention_heads,
                num_key_value_heads);
  if (!family_by_model_type(model_type))
    fail_format(path, "model_type '{}' is not supported (supported: {})", model_type, supported_model_types());
  if (!no_rope_layers.empty() && int64_t(no_rope_layers.size()) != num_hidden_layers)
    fail_format(path, "no_rope_layers has {} entries, expected num_hidden_layers = {}", no_rope_layers.size(), num_hidden_layers);
  if (!layer_types.empty() && int64_t(layer_types.size()) != num_hidden_layers)
    fail_format(path, "layer_types has {} entries, expected num_hidden_layers = {}", layer_types.size(), num_hidden_layers);
  if (gemma_block) {
    if (!(query_pre_attn_scalar > 0.0f))
      fail_format(path, "query_pre_attn_scalar must be positive, found {}", query_pre_attn_scalar);
    if (has_sliding_layers() && sliding_window <= 0)
      fail_format(path, "sliding_window must be positive when layers are sliding_attention, found {}", sliding_window);
    if (!(rope_local_base_freq > 0.0f))
      fail_format(path, "rope_local_base_freq must be positive, found {}", rope_local_base_freq);
    if (!(attn_logit_softcapping >= 0.0f) || !(final_logit_softcapping >= 0.0f))
      fail_format(path, "attn_logit_softcapping and final_logit_softcapping must be positive or none, found {} and {}",
                  attn_logit_softcapping, final_logit_softcapping);
  }
  if (head_dim % 2 != 0) fail_format(path, "head_dim ({}) must be even for rotary embeddings", head_dim);
  if (rotary_dim < 0 || rotary_dim > head_dim || rotary_dim % 2 != 0)
    fail_format(path, "the rotary dimension ({} of head_dim {}) must be even and at most head_dim", rotary_dim, head_dim);
  if (!(rms_norm_eps > 0.0f)) fail_format(path, "rms_norm_eps must be positive, found {}", rms_norm_eps);
  if (!(rope_theta > 0.0f)) fail_format(path, "rope_theta must be positive, found {}", rope_theta);
  if (!rope_scaling.type.empty()) {
    if (rope_scaling.type != "llama3" && rope_scaling.type != "linear" && rope_scaling.type != "longrope")
      fail_format(path, "rope_scaling type '{}' is not supported (supported: llama3, linear, longrope)", rope_scaling.type);
    if (rope_scaling.type == "longrope" && (int64_t(rope_scaling.short_factor.size()) != rope_dim() / 2 ||
                                            int64_t(rope_scaling.long_factor.size()) != rope_dim() / 2))
      fail_format(path, "rope_scaling longrope needs {}/2 = {} short_factor and long_factor values, found {} and {}",
                  rope_dim() == head_dim ? "head_dim" : "the rotary dimension", rope_dim() / 2,
                  rope_scaling.short_factor.size(), rope_scaling.long_factor.size());
    if (rope_scaling.type == "longrope" && !(rope_scaling.attention_factor > 0.0f))
      fail_format(path, "rope_scaling attention_factor must be positive, found {}", rope_scaling.attention_factor);
    if (!(rope_scaling.factor > 0.0f)) fail_format(path, "rope_scaling factor must be positive, found {}", rope_scaling.factor);
    if (rope_scaling.type == "llama3" &&
        (!(rope_scaling.low_freq_factor > 0.0f) || !(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor) ||
         rope_scaling.original_max_position_embeddings <= 0))
      fail_format(path, "rope_scaling llama3 needs 0 < low_freq_factor < high_freq_factor and a positive "
                        "original_max_position_embeddings");
  }
}

bool ModelConfig::has_sliding_layers() const {
  for (int64_t l = 0; l < int64_t(layer_types.size()); ++l)
    if (is_sliding(l)) return true;
  return false;
}

float ModelConfig::query_scale() const {
  if (query_pre_attn_scalar <= 0.0f) return 1.0f;
  return float(std::sqrt(double(head_dim) / double(query_pre_attn_scalar)));
}

float ModelConfig::embedding_scale(bool bf16_embeddings) const {
  if (!gemma_block) return 1.0f;
  const float s = float(std::sqrt(double(hidden_size)));
  return bf16_embeddings ? bf16_to_f32(f32_to_bf16(s)) : s;
}

ModelConfig ModelConfig::local_rope_config() const {
  if (!model_family(model_type).local_rope_base) return *this;
  ModelConfig local = *this;
  local.rope_theta = rope_local_base_freq;
  local.rope_scaling = RopeScaling{};
  return local;
}

}  // namespace lora
