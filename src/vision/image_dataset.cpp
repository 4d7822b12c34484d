#include "vision/image_dataset.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "vision/idx.h"
#include "vision/image_io.h"

namespace fs = std::filesystem;

namespace lora::vision {
namespace {

// Which of the candidates exists: the plain file or its .gz.
std::string existing(const std::string& base) {
  if (fs::exists(base)) return base;
  if (fs::exists(base + ".gz")) return base + ".gz";
  return "";
}

struct Selector {
  const DatasetSelection& sel;
  std::map<int32_t, int64_t> seen, taken;
  bool take(int32_t label) {
    const int64_t k = seen[label]++;
    if (k < sel.skip_per_class) return false;
    auto it = sel.class_max.find(label);
    const int64_t limit = it != sel.class_max.end() ? it->second : sel.max_per_class;
    if (limit >= 0 && taken[label] >= limit) return false;
    ++taken[label];
    return true;
  }
};

Tensor stack(const std::vector<Tensor>& items, const std::string& where) {
  if (items.empty()) fail_format(where, "no images selected");
  std::vector<int64_t> shape{int64_t(items.size())};
  for (int64_t d : items[0].shape()) shape.push_back(d);
  Tensor out(DType::F32, shape);
  const int64_t per = items[0].numel();
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].shape() != items[0].shape())
      fail_format(where, "images preprocess to different sizes ({} and {}): set preprocess resize/crop in config.json",
                  items[0].shape_str(), items[i].shape_str());
    std::memcpy(out.f32() + int64_t(i) * per, items[i].f32(), size_t(per) * 4);
  }
  return out;
}

ImageDataset load_idx(const std::string& images_path, const std::string& labels_path, const VggConfig& config,
                      const DatasetSelection& sel) {
  const IdxArray images = read_idx(images_path), labels = read_idx(labels_path);
  if (images.shape.size() != 3) fail_format(images_path, "IDX images must have 3 dimensions (N, H, W), not {}", images.shape.size());
  if (labels.shape.size() != 1) fail_format(labels_path, "IDX labels must have 1 dimension, not {}", labels.shape.size());
  if (labels.shape[0] != images.shape[0])
    fail_format(labels_path, "{} labels for the {} images of {}", labels.shape[0], images.shape[0], images_path);
  if (config.in_channels != 1) fail_format(images_path, "IDX images have 1 channel, the model takes {}", config.in_channels);
  ImageDataset d;
  int32_t max_label = -1;
  for (uint8_t l : labels.data) max_label = std::max<int32_t>(max_label, l);
  if (max_label >= config.num_classes)
    fail_format(labels_path, "label {} is outside the model's {} classes", max_label, config.num_classes);
  for (int64_t c = 0; c < config.num_classes; ++c) d.class_names.push_back(config.class_name(c));
  const int64_t h = images.shape[1], w = images.shape[2];
  Selector pick{sel};
  std::vector<Tensor> items;
  for (int64_t i = 0; i < images.shape[0]; ++i) {
    const int32_t label = labels.data[size_t(i)];
    if (!pick.take(label)) continue;
    items.push_back(preprocess_gray(images.data.data() + i * h * w, h, w, config.preprocess));
    d.labels.push_back(label);
  }
  d.images = stack(items, images_path);
  return d;
}

ImageDataset load_folder(const std::string& dir, const VggConfig& config, const DatasetSelection& sel) {
  ImageDataset d;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) d.class_names.push_back(e.path().filename().string());
  std::sort(d.class_names.begin(), d.class_names.end());
  if (d.class_names.empty()) fail_format(dir, "no class sub-folders (an ImageFolder) and no IDX files");
  // Class names that the model knows map to its indices; an ImageFolder of the model's own classes keeps them.
  std::vector<int32_t> index(d.class_names.size());
  for (size_t c = 0; c < d.class_names.size(); ++c) {
    index[c] = int32_t(c);
    for (int64_t k = 0; k < int64_t(config.class_names.size()); ++k)
      if (config.class_names[size_t(k)] == d.class_names[c]) index[c] = int32_t(k);
    if (index[c] >= config.num_classes)
      fail_format(dir, "class folder \"{}\" is class {}, the model has {} classes", d.class_names[c], index[c], config.num_classes);
  }
  Selector pick{sel};
  std::vector<Tensor> items;
  for (size_t c = 0; c < d.class_names.size(); ++c) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(fs::path(dir) / d.class_names[c]))
      if (e.is_regular_file()) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    for (const std::string& f : files) {
      if (!pick.take(index[c])) continue;
      items.push_back(preprocess_image(read_image(f), config.preprocess, config.in_channels, f));
      d.labels.push_back(index[c]);
    }
  }
  d.images = stack(items, dir);
  if (!config.class_names.empty() || int64_t(d.class_names.size()) != config.num_classes) {
    d.class_names.clear();
    for (int64_t c = 0; c < config.num_classes; ++c) d.class_names.push_back(config.class_name(c));
  }
  return d;
}

}  // namespace

Tensor ImageDataset::batch(const std::vector<int64_t>& indices) const {
  std::vector<int64_t> shape = images.shape();
  shape[0] = int64_t(indices.size());
  Tensor out(DType::F32, shape);
  const int64_t per = images.numel() / images.dim(0);
  for (size_t i = 0; i < indices.size(); ++i)
    std::memcpy(out.f32() + int64_t(i) * per, images.f32() + indices[i] * per, size_t(per) * 4);
  return out;
}

ImageDataset load_image_dataset(const std::string& path, const VggConfig& config, const DatasetSelection& sel) {
  if (!fs::is_directory(path)) fail_format(path, "DATA must be a folder (class sub-folders of images, or IDX files)");
  const std::string images = existing(path + "/" + sel.split + "-images-idx3-ubyte");
  const std::string labels = existing(path + "/" + sel.split + "-labels-idx1-ubyte");
  if (!images.empty() || !labels.empty()) {
    if (images.empty() || labels.empty())
      fail_format(path, "has only one of {0}-images-idx3-ubyte and {0}-labels-idx1-ubyte", sel.split);
    return load_idx(images, labels, config, sel);
  }
  return load_folder(path, config, sel);
}

}  // namespace lora::vision
