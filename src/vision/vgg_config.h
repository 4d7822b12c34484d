#pragma once
// A VGG-style classifier described the way torchvision builds one (torchvision.models.vgg), so that its
// modules carry torchvision's state-dict names:
//
//   features:   per entry of the layer list, a number v -> Conv2d(in, v, 3, padding=1) [BatchNorm2d(v)] ReLU,
//               "M" -> MaxPool2d(2, 2); modules numbered features.0, features.1, ... in that order
//   avgpool:    AdaptiveAvgPool2d(avgpool)
//   flatten
//   classifier: per hidden width h: Linear ReLU Dropout; then Linear(num_classes); classifier.0, ...
//
// config.json in the model folder:
//   {"architecture": "vgg11" | "vgg11_bn" | ... | "vgg19_bn" | "vgg",   ("vgg": give "features" yourself)
//    "features": [64, "M", ...], "batch_norm": false, "in_channels": 3, "avgpool": [7, 7],
//    "classifier": [4096, 4096], "dropout": 0.5, "num_classes": 1000, "class_names": [...],
//    "preprocess": {"resize": 256, "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
#include <cstdint>
#include <string>
#include <vector>

#include "vision/conv2d.h"

namespace lora::vision {

struct Preprocess {
  int64_t resize = 0;  // shorter side resized to this (0: keep), bilinear
  int64_t crop = 0;    // then a centre crop of crop x crop (0: none)
  std::vector<float> mean, std;  // per channel, after scaling pixels to [0, 1]
};

struct VggConfig {
  std::string architecture = "vgg";
  std::vector<int64_t> features;  // conv widths, 0 for "M"
  bool batch_norm = false;
  int64_t in_channels = 3;
  int64_t avgpool_h = 7, avgpool_w = 7;
  std::vector<int64_t> classifier_hidden{4096, 4096};
  float dropout = 0.5f;
  int64_t num_classes = 1000;
  std::vector<std::string> class_names;  // may be empty (then "0", "1", ...)
  Preprocess preprocess;

  std::string class_name(int64_t c) const;
};

// Reads config.json (FormatError naming the file on a missing or ill-typed key).
VggConfig read_vgg_config(const std::string& path);
std::string vgg_config_json(const VggConfig& c);  // what read_vgg_config reads back

enum class LayerKind { Conv2d, BatchNorm2d, ReLU, MaxPool2d, AdaptiveAvgPool2d, Flatten, Dropout, Linear };

// One module of the network, in forward order.
struct LayerSpec {
  LayerKind kind;
  std::string name;      // torchvision's module path ("features.3", "classifier.6", "avgpool", "flatten")
  Conv2dShape conv;      // Conv2d
  int64_t channels = 0;  // BatchNorm2d
  int64_t in_features = 0, out_features = 0;  // Linear
};
std::vector<LayerSpec> vgg_layers(const VggConfig& c);

}  // namespace lora::vision
