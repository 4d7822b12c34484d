#include "vision/vgg_model.h"

#include <cmath>
#include <filesystem>
#include <map>

#include "core/atomic_file.h"
#include "core/error.h"
#include "formats/safetensors.h"

namespace lora::vision {
namespace {

constexpr float kBatchNormEps = 1e-5f;  // torch.nn.BatchNorm2d's default, as torchvision's VGG uses

const Tensor& take(const std::map<std::string, Tensor>& state, const std::string& name,
                   const std::vector<int64_t>& shape, const std::string& where) {
  auto it = state.find(name);
  if (it == state.end()) fail_format(where, "tensor {} is missing (the config expects it with shape {})", name,
                                     Tensor(DType::F32, shape).shape_str());
  if (it->second.shape() != shape)
    fail_format(where, "tensor {} has shape {}, the config expects {}", name, it->second.shape_str(),
                Tensor(DType::F32, shape).shape_str());
  return it->second;
}

Tensor f32_copy(const Tensor& t) { return t.dtype() == DType::F32 ? t.clone() : t.to(DType::F32); }

}  // namespace

const VggLayer* VggModel::find(const std::string& name) const {
  for (const VggLayer& l : layers)
    if (l.spec.name == name) return &l;
  return nullptr;
}
VggLayer* VggModel::find(const std::string& name) {
  return const_cast<VggLayer*>(static_cast<const VggModel*>(this)->find(name));
}

int64_t VggModel::parameter_count() const {
  int64_t n = 0;
  for (const VggLayer& l : layers) n += (l.weight.empty() ? 0 : l.weight.numel()) + (l.bias.empty() ? 0 : l.bias.numel());
  return n;
}

VggModel vgg_from_state_dict(const VggConfig& config, const std::map<std::string, Tensor>& state,
                             const std::string& where) {
  VggModel m{config, {}};
  std::map<std::string, bool> used;
  auto get = [&](const std::string& name, const std::vector<int64_t>& shape) {
    used[name] = true;
    return f32_copy(take(state, name, shape, where));
  };
  for (const LayerSpec& spec : vgg_layers(config)) {
    VggLayer l{spec};
    const std::string& p = spec.name;
    if (spec.kind == LayerKind::Conv2d) {
      const Conv2dShape& c = spec.conv;
      l.weight = get(p + ".weight", {c.out_channels, c.in_channels, c.kernel_h, c.kernel_w});
      l.bias = get(p + ".bias", {c.out_channels});
    } else if (spec.kind == LayerKind::Linear) {
      l.weight = get(p + ".weight", {spec.out_features, spec.in_features});
      l.bias = get(p + ".bias", {spec.out_features});
    } else if (spec.kind == LayerKind::BatchNorm2d) {
      const std::vector<int64_t> c{spec.channels};
      l.bn = fold_batchnorm(get(p + ".weight", c), get(p + ".bias", c), get(p + ".running_mean", c),
                            get(p + ".running_var", c), kBatchNormEps);
      used[p + ".num_batches_tracked"] = true;
    }
    m.layers.push_back(std::move(l));
  }
  for (const auto& [name, t] : state)
    if (!used.count(name))
      fail_format(where, "tensor {} {} is not a module of this {} config", name, t.shape_str(), config.architecture);
  return m;
}

VggModel load_vgg_model(const std::string& dir) {
  const VggConfig config = read_vgg_config(dir + "/config.json");
  const std::string path = dir + "/model.safetensors";
  if (!std::filesystem::exists(path)) fail_format(path, "no model.safetensors in the model folder");
  const SafetensorsFile file = SafetensorsFile::open(path);
  std::map<std::string, Tensor> state;
  for (const auto& info : file.tensors()) {
    if (!info.dtype) fail_format(path, "tensor {} has dtype {}, which lora.cpp does not read", info.name, info.dtype_name);
    if (info.name.size() > 20 && info.name.ends_with("num_batches_tracked")) continue;
    state[info.name] = file.load(info.name);
  }
  return vgg_from_state_dict(config, state, path);
}

VggModel random_vgg_model(const VggConfig& config, uint64_t seed) {
  std::mt19937_64 rng(seed);
  VggModel m{config, {}};
  for (const LayerSpec& spec : vgg_layers(config)) {
    VggLayer l{spec};
    if (spec.kind == LayerKind::Conv2d) {
      const Conv2dShape& c = spec.conv;
      l.weight = Tensor(DType::F32, {c.out_channels, c.in_channels, c.kernel_h, c.kernel_w});
      l.bias = Tensor(DType::F32, {c.out_channels});
      std::normal_distribution<float> d(0.0f, std::sqrt(2.0f / float(c.out_channels * c.kernel_h * c.kernel_w)));
      for (int64_t i = 0; i < l.weight.numel(); ++i) l.weight.f32()[i] = d(rng);
    } else if (spec.kind == LayerKind::Linear) {
      l.weight = Tensor(DType::F32, {spec.out_features, spec.in_features});
      l.bias = Tensor(DType::F32, {spec.out_features});
      std::normal_distribution<float> d(0.0f, 0.01f);
      for (int64_t i = 0; i < l.weight.numel(); ++i) l.weight.f32()[i] = d(rng);
    } else if (spec.kind == LayerKind::BatchNorm2d) {
      l.bn = {Tensor(DType::F32, {spec.channels}), Tensor(DType::F32, {spec.channels})};
      for (int64_t i = 0; i < spec.channels; ++i) l.bn.scale.f32()[i] = 1.0f / std::sqrt(1.0f + kBatchNormEps);
    }
    m.layers.push_back(std::move(l));
  }
  return m;
}

void save_vgg_model(const VggModel& model, const std::string& dir) {
  std::map<std::string, Tensor> state;
  for (const VggLayer& l : model.layers) {
    const std::string& p = l.spec.name;
    if (!l.weight.empty()) {
      state[p + ".weight"] = l.weight;
      state[p + ".bias"] = l.bias;
    } else if (l.spec.kind == LayerKind::BatchNorm2d) {
      const int64_t c = l.spec.channels;
      Tensor var(DType::F32, {c}), mean(DType::F32, {c});
      for (int64_t i = 0; i < c; ++i) var.f32()[i] = 1.0f - kBatchNormEps;
      state[p + ".weight"] = l.bn.scale;
      state[p + ".bias"] = l.bn.shift;
      state[p + ".running_mean"] = mean;
      state[p + ".running_var"] = var;
    }
  }
  AtomicDirectory out(dir);
  write_file_atomic(out / "config.json", vgg_config_json(model.config));
  save_safetensors(out / "model.safetensors", state, {{"format", "pt"}});
  out.commit();
}

}  // namespace lora::vision
