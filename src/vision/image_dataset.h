#pragma once
// A labelled image set, preprocessed for one model: a torchvision ImageFolder (one sub-folder per class, named
// after it, classes in sorted order; PNG and JPEG files) or IDX files (Fashion-MNIST: <split>-images-idx3-ubyte
// and <split>-labels-idx1-ubyte, optionally .gz, in one folder).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "vision/vgg_config.h"

namespace lora::vision {

struct ImageDataset {
  Tensor images;                 // [N, C, H, W], preprocessed
  std::vector<int32_t> labels;   // [N]
  std::vector<std::string> class_names;
  int64_t size() const { return int64_t(labels.size()); }
  int64_t classes() const { return int64_t(class_names.size()); }
  Tensor batch(const std::vector<int64_t>& indices) const;  // [len, C, H, W] copy
};

struct DatasetSelection {
  std::string split = "train";            // IDX: which files
  int64_t max_per_class = -1;             // first N of each class in file order (-1: all)
  std::map<int32_t, int64_t> class_max;   // per-class override (0 leaves a class out)
  int64_t skip_per_class = 0;             // skip the first K of each class (a disjoint few-shot set)
};

ImageDataset load_image_dataset(const std::string& path, const VggConfig& config, const DatasetSelection& sel);

}  // namespace lora::vision
