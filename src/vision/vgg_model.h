#pragma once
// A VGG-style classifier's weights: the layer list of vgg_config.h with each module's tensors, read from (and
// written to) a model folder of config.json + model.safetensors holding torchvision's state-dict names:
//   features.N.weight [O, C, 3, 3], features.N.bias [O]             (Conv2d)
//   features.N.weight/.bias/.running_mean/.running_var [C]           (BatchNorm2d; num_batches_tracked ignored)
//   classifier.N.weight [out, in], classifier.N.bias [out]          (Linear)
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "vision/pointwise.h"
#include "vision/vgg_config.h"

namespace lora::vision {

struct VggLayer {
  LayerSpec spec;
  Tensor weight, bias;  // Conv2d, Linear (f32)
  FoldedBatchNorm bn;   // BatchNorm2d, folded at load time (eval mode)
};

struct VggModel {
  VggConfig config;
  std::vector<VggLayer> layers;

  const VggLayer* find(const std::string& name) const;
  VggLayer* find(const std::string& name);
  int64_t parameter_count() const;
};

// Reads dir/config.json and dir/model.safetensors. Every module must have its tensors with the shapes the
// config implies, and the file nothing else: FormatError naming the file and the first mismatching tensor.
VggModel load_vgg_model(const std::string& dir);
// A state dict (name -> tensor, torchvision names) checked against a config; `where` names it in errors.
VggModel vgg_from_state_dict(const VggConfig& config, const std::map<std::string, Tensor>& state,
                             const std::string& where);

// torchvision's init: conv kaiming_normal(fan_out, relu) with zero bias, linear N(0, 0.01) with zero bias,
// batch norm γ = 1, β = 0, mean 0, var 1.
VggModel random_vgg_model(const VggConfig& config, uint64_t seed);

// Writes config.json and model.safetensors (batch norm as weight = scale, bias = shift, mean 0, var 1 − eps
// would be lossy, so a model with batch norm is written with its folded scale as weight, running_var =
// 1 − eps and running_mean = 0, which folds back to the same scale and shift).
void save_vgg_model(const VggModel& model, const std::string& dir);

}  // namespace lora::vision
