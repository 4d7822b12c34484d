#include "formats/bnb.h"

#include <cmath>
#include <cstring>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace lora {

namespace {

using nlohmann::json;

const char* torch_dtype(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    default: fail("a quantized weight's source dtype must be float32, bfloat16 or float16, not {}", dtype_name(t));
  }
}

std::optional<DType> dtype_from_torch(const std::string& s) {
  if (s == "float32") return DType::F32;
  if (s == "bfloat16") return DType::BF16;
  if (s == "float16") return DType::F16;
  return std::nullopt;
}

// repr() of a Python float: the shortest digits that round-trip, exponent form below 1e-4 and from 1e16
// (fmt's default presentation follows the same rule), and a ".0" on integral values.
std::string python_float(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eni") == std::string::npos) s += ".0";
  return s;
}

// "<name without .weight>": the module prefix bitsandbytes' 8-bit keys hang from.
std::string module_prefix(const std::string& name) {
  const std::string suffix = "weight";
  if (name.size() < suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    fail("bitsandbytes keys need a weight name ending in 'weight', got '{}'", name);
  return name.substr(0, name.size() - suffix.size());
}

Tensor require(const TensorLookup& find, const std::string& where, const std::string& key, DType dtype, int64_t numel) {
  std::optional<Tensor> t = find(key);
  if (!t) fail_format(where, "missing tensor '{}' of a bitsandbytes-quantized weight", key);
  if (t->dtype() != dtype)
    fail_format(where, "tensor '{}' has dtype {}, expected {}", key, dtype_name(t->dtype()), dtype_name(dtype));
  if (t->numel() != numel) fail_format(where, "tensor '{}' has {} elements, expected {}", key, t->numel(), numel);
  return *t;
}

// The process-wide code book when `t` holds the same values: one copy instead of one per weight.
Tensor deduplicated(const Tensor& t, DType book) {
  const Tensor& shared = shared_code(book);
  return t.numel() == shared.numel() && std::memcmp(t.data(), shared.data(), shared.nbytes()) == 0 ? shared : t;
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// A string field of a quant_state, or `fallback` when it is absent; any other type is refused.
std::string json_string(const json& j, const char* key, const std::string& fallback, const std::string& where,
                        const std::string& state_key) {
  if (!j.contains(key)) return fallback;
  if (!j[key].is_string()) fail_format(where, "'{}': \"{}\" must be a string, found {}", state_key, key, j[key].dump());
  return j[key].get<std::string>();
}

int64_t json_int(const json& j, const char* key, const std::string& where, const std::string& state_key) {
  if (!j.contains(key) || !j[key].is_number_integer() || j[key].get<int64_t>() <= 0)
    fail_format(where, "'{}': \"{}\" must be a positive integer", state_key, key);
  return j[key].get<int64_t>();
}

std::optional<Tensor> load_4bit(const TensorLookup& find, const std::string& where, const std::string& name,
                                const std::vector<int64_t>& shape, DType type, const Tensor& state_bytes) {
  const std::string state_key = name + ".quant_state.bitsandbytes__" + quant_type_name(type);
  if (state_bytes.dtype() != DType::U8)
    fail_format(where, "'{}' has dtype {}, expected U8 (JSON bytes)", state_key, dtype_name(state_bytes.dtype()));
  const auto* bytes = state_bytes.data_as<char>();
  const json j = json::parse(bytes, bytes + state_bytes.numel(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) fail_format(where, "'{}' does not hold a JSON object", state_key);
  if (!j.contains("quant_type") || j["quant_type"] != quant_type_name(type))
    fail_format(where, "'{}': quant_type {} does not match the key", state_key, j.value("quant_type", json()).dump());

  std::vector<int64_t> stored_shape;
  if (!j.contains("shape") || !j["shape"].is_array()) fail_format(where, "'{}': \"shape\" must be a list", state_key);
  for (const json& d : j["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) fail_format(where, "'{}': bad \"shape\" {}", state_key, j["shape"].dump());
    stored_shape.push_back(d.get<int64_t>());
  }
  if (stored_shape != shape)
    fail_format(where, "tensor '{}' has shape {} (quant_state), expected {} from the config", name, shape_str(stored_shape),
                shape_str(shape));

  auto s = std::make_shared<QuantState>();
  s->type = type;
  s->blocksize = json_int(j, "blocksize", where, state_key);
  const auto source = dtype_from_torch(json_string(j, "dtype", "", where, state_key));
  if (!source) fail_format(where, "'{}': \"dtype\" {} is not float32, bfloat16 or float16", state_key, j.value("dtype", json()).dump());
  s->source_dtype = *source;
  const int64_t n = product(shape), blocks = (n + s->blocksize - 1) / s->blocksize;

  // The packed codes: bitsandbytes stores them as u8 [(n+1)/2, 1], or in a wider quant_storage dtype
  // holding the same bytes.
  std::optional<Tensor> packed = find(name);
  if (!packed) fail_format(where, "missing tensor '{}'", name);
  if (packed->quantized() || packed->nbytes() != size_t(n + 1) / 2)
    fail_format(where, "tensor '{}' holds {} bytes of 4-bit codes, expected {} for shape {}", name, packed->nbytes(),
                (n + 1) / 2, shape_str(shape));
  s->code = deduplicated(require(find, where, name + ".quant_map", DType::F32, 16), type);

  s->nested = j.contains("nested_offset") || find(name + ".nested_absmax").has_value();
  if (s->nested) {
    s->nested_blocksize = json_int(j, "nested_blocksize", where, state_key);
    if (!j.contains("nested_offset") || !j["nested_offset"].is_number() ||
        !(std::fabs(j["nested_offset"].get<double>()) <= double(std::numeric_limits<float>::max())))
      fail_format(where, "'{}': \"nested_offset\" must be a number in float range", state_key);
    if (json_string(j, "nested_dtype", "float32", where, state_key) != "float32")
      fail_format(where, "'{}': nested_dtype {} is not float32", state_key, j["nested_dtype"].dump());
    s->offset = float(j["nested_offset"].get<double>());
    s->absmax = require(find, where, name + ".absmax", DType::U8, blocks);
    s->nested_absmax = require(find, where, name + ".nested_absmax", DType::F32,
                               (blocks + s->nested_blocksize - 1) / s->nested_blocksize);
    s->nested_code = deduplicated(require(find, where, name + ".nested_quant_map", DType::F32, 256), DType::U8);
  } else {
    s->absmax = require(find, where, name + ".absmax", DType::F32, blocks);
  }
  return Tensor(type, shape, packed->data(), packed->owner(), s);
}

std::optional<Tensor> load_int8(const TensorLookup& find, const std::string& where, const std::string& name,
                                const std::vector<int64_t>& shape) {
  if (shape.size() != 2) fail_format(where, "8-bit weight '{}' must be 2-D", name);
  const std::string prefix = module_prefix(name);
  if (std::optional<Tensor> format = find(prefix + "weight_format")) {
    if (format->numel() != 1 || (format->dtype() != DType::U8 && format->dtype() != DType::I64 && format->dtype() != DType::I32))
      fail_format(where, "'{}weight_format' must be one integer", prefix);
    const int64_t v = format->dtype() == DType::U8    ? *format->data_as<uint8_t>()
                      : format->dtype() == DType::I32 ? *format->data_as<int32_t>()
                                                      : *format->data_as<int64_t>();
    if (v != 0) fail_format(where, "'{}weight_format' is {}; only the row-major layout (0) is supported", prefix, v);
  }
  const Tensor codes = require(find, where, name, DType::I8, shape[0] * shape[1]);
  if (codes.shape() != shape)
    fail_format(where, "tensor '{}' has shape {}, expected {} from the config", name, codes.shape_str(), shape_str(shape));
  auto s = std::make_shared<QuantState>();
  s->type = DType::INT8_ROW;
  s->blocksize = shape[1];
  s->source_dtype = DType::F16;  // LLM.int8() quantizes fp16 weights
  s->absmax = require(find, where, prefix + "SCB", DType::F32, shape[0]);
  return Tensor(DType::INT8_ROW, shape, const_cast<void*>(codes.data()), codes.owner(), s);
}

}  // namespace

std::optional<Tensor> load_bnb_weight(const TensorLookup& find, const std::string& where, const std::string& name,
                                      const std::vector<int64_t>& shape) {
  for (DType type : {DType::NF4, DType::FP4})
    if (std::optional<Tensor> state = find(name + ".quant_state.bitsandbytes__" + quant_type_name(type)))
      return load_4bit(find, where, name, shape, type, *state);
  if (name.size() >= 6 && name.ends_with("weight"))
    if (find(module_prefix(name) + "SCB")) return load_int8(find, where, name, shape);
  return std::nullopt;
}

std::string bnb_quant_state_json(const QuantState& s, const std::vector<int64_t>& shape) {
  // json.dumps' default separators (", " and ": ") and key order of QuantState.as_dict.
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += (i ? ", " : "") + std::to_string(shape[i]);
  std::string j = fmt::format(R"({{"quant_type": "{}", "blocksize": {}, "dtype": "{}", "shape": [{}])",
                              quant_type_name(s.type), s.blocksize, torch_dtype(s.source_dtype), dims);
  if (s.nested)
    j += fmt::format(R"(, "nested_blocksize": {}, "nested_dtype": "float32", "nested_offset": {})", s.nested_blocksize,
                     python_float(double(s.offset)));
  return j + "}";
}

void add_bnb_tensors(const std::string& name, const Tensor& q, std::map<std::string, Tensor>& out) {
  if (!q.quantized()) fail("'{}' is not quantized", name);
  const QuantState& s = *q.quant();
  if (q.dtype() == DType::INT8_ROW) {
    const std::string prefix = module_prefix(name);
    out[name] = Tensor(DType::I8, q.shape(), const_cast<void*>(q.data()), q.owner());
    out[prefix + "SCB"] = s.absmax;
    Tensor format(DType::U8, {});
    *format.data_as<uint8_t>() = 0;
    out[prefix + "weight_format"] = format;
    return;
  }
  const int64_t n = q.numel();
  out[name] = Tensor(DType::U8, {(n + 1) / 2, 1}, const_cast<void*>(q.data()), q.owner());
  out[name + ".absmax"] = s.absmax;
  out[name + ".quant_map"] = s.code;
  if (s.nested) {
    out[name + ".nested_absmax"] = s.nested_absmax;
    out[name + ".nested_quant_map"] = s.nested_code;
  }
  const std::string text = bnb_quant_state_json(s, q.shape());
  Tensor bytes(DType::U8, {int64_t(text.size())});
  std::memcpy(bytes.data(), text.data(), text.size());
  out[name + ".quant_state.bitsandbytes__" + quant_type_name(s.type)] = bytes;
}

json bnb_quantization_config(const QuantState& s) {
  const bool four_bit = s.type != DType::INT8_ROW;
  return json{
      {"_load_in_4bit", four_bit},
      {"_load_in_8bit", !four_bit},
      {"bnb_4bit_compute_dtype", four_bit ? "bfloat16" : "float32"},
      {"bnb_4bit_quant_storage", "uint8"},
      {"bnb_4bit_quant_type", four_bit ? quant_type_name(s.type) : "fp4"},
      {"bnb_4bit_use_double_quant", four_bit && s.nested},
      {"llm_int8_enable_fp32_cpu_offload", false},
      {"llm_int8_has_fp16_weight", false},
      {"llm_int8_skip_modules", nullptr},
      {"llm_int8_threshold", 6.0},
      {"load_in_4bit", four_bit},
      {"load_in_8bit", !four_bit},
      {"quant_method", "bitsandbytes"},
  };
}

}  // namespace lora
