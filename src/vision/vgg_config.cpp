#include "vision/vgg_config.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace lora::vision {
namespace {

// torchvision.models.vgg's cfgs "A", "B", "D", "E" (0 = "M").
const std::map<std::string, std::vector<int64_t>>& torchvision_features() {
  static const std::map<std::string, std::vector<int64_t>> table{
      {"vgg11", {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0}},
      {"vgg13", {64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0}},
      {"vgg16", {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0}},
      {"vgg19", {64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0}},
  };
  return table;
}

}  // namespace

std::string VggConfig::class_name(int64_t c) const {
  return c < int64_t(class_names.size()) ? class_names[size_t(c)] : std::to_string(c);
}

VggConfig read_vgg_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail_format(path, "cannot open the model's config.json");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    fail_format(path, "not valid JSON: {}", e.what());
  }
  VggConfig c;
  try {
    c.architecture = j.value("architecture", std::string("vgg"));
    std::string base = c.architecture;
    if (base.size() > 3 && base.substr(base.size() - 3) == "_bn") {
      c.batch_norm = true;
      base = base.substr(0, base.size() - 3);
    }
    if (auto it = torchvision_features().find(base); it != torchvision_features().end()) c.features = it->second;
    else if (base != "vgg") fail_format(path, "architecture \"{}\" is not vgg, vgg11/13/16/19 or their _bn", c.architecture);
    if (j.contains("features")) {
      c.features.clear();
      for (const auto& v : j.at("features")) c.features.push_back(v.is_string() && v == "M" ? 0 : v.get<int64_t>());
    }
    if (c.features.empty()) fail_format(path, "no \"features\" layer list");
    c.batch_norm = j.value("batch_norm", c.batch_norm);
    c.in_channels = j.value("in_channels", c.in_channels);
    if (j.contains("avgpool")) {
      c.avgpool_h = j.at("avgpool").at(0).get<int64_t>();
      c.avgpool_w = j.at("avgpool").at(1).get<int64_t>();
    }
    if (j.contains("classifier")) c.classifier_hidden = j.at("classifier").get<std::vector<int64_t>>();
    c.dropout = j.value("dropout", c.dropout);
    c.num_classes = j.value("num_classes", c.num_classes);
    if (j.contains("class_names")) c.class_names = j.at("class_names").get<std::vector<std::string>>();
    if (j.contains("preprocess")) {
      const auto& p = j.at("preprocess");
      c.preprocess.resize = p.value("resize", int64_t(0));
      c.preprocess.crop = p.value("crop", int64_t(0));
      c.preprocess.mean = p.value("mean", std::vector<float>{});
      c.preprocess.std = p.value("std", std::vector<float>{});
    }
  } catch (const nlohmann::json::exception& e) {
    fail_format(path, "bad value in config.json: {}", e.what());
  }
  if (c.preprocess.mean.empty()) c.preprocess.mean.assign(size_t(c.in_channels), 0.0f);
  if (c.preprocess.std.empty()) c.preprocess.std.assign(size_t(c.in_channels), 1.0f);
  if (int64_t(c.preprocess.mean.size()) != c.in_channels || int64_t(c.preprocess.std.size()) != c.in_channels)
    fail_format(path, "preprocess mean/std need {} values (in_channels)", c.in_channels);
  if (!c.class_names.empty() && int64_t(c.class_names.size()) != c.num_classes)
    fail_format(path, "{} class_names for num_classes {}", c.class_names.size(), c.num_classes);
  return c;
}

std::string vgg_config_json(const VggConfig& c) {
  nlohmann::json j;
  j["architecture"] = c.architecture;
  nlohmann::json f = nlohmann::json::array();
  for (int64_t v : c.features) f.push_back(v == 0 ? nlohmann::json("M") : nlohmann::json(v));
  j["features"] = f;
  j["batch_norm"] = c.batch_norm;
  j["in_channels"] = c.in_channels;
  j["avgpool"] = {c.avgpool_h, c.avgpool_w};
  j["classifier"] = c.classifier_hidden;
  j["dropout"] = c.dropout;
  j["num_classes"] = c.num_classes;
  if (!c.class_names.empty()) j["class_names"] = c.class_names;
  j["preprocess"] = {{"resize", c.preprocess.resize}, {"crop", c.preprocess.crop}, {"mean", c.preprocess.mean},
                     {"std", c.preprocess.std}};
  return j.dump(2) + "\n";
}

std::vector<LayerSpec> vgg_layers(const VggConfig& c) {
  std::vector<LayerSpec> layers;
  int64_t index = 0, channels = c.in_channels;
  auto features = [&](LayerKind kind) {
    LayerSpec l{kind, "features." + std::to_string(index++)};
    return l;
  };
  for (int64_t v : c.features) {
    if (v == 0) {
      layers.push_back(features(LayerKind::MaxPool2d));
      continue;
    }
    LayerSpec conv = features(LayerKind::Conv2d);
    conv.conv = Conv2dShape{.in_channels = channels, .out_channels = v, .kernel_h = 3, .kernel_w = 3,
                            .stride = 1, .padding = 1};
    layers.push_back(conv);
    if (c.batch_norm) {
      LayerSpec bn = features(LayerKind::BatchNorm2d);
      bn.channels = v;
      layers.push_back(bn);
    }
    layers.push_back(features(LayerKind::ReLU));
    channels = v;
  }
  layers.push_back({LayerKind::AdaptiveAvgPool2d, "avgpool"});
  layers.push_back({LayerKind::Flatten, "flatten"});
  index = 0;
  int64_t width = channels * c.avgpool_h * c.avgpool_w;
  auto classifier = [&](LayerKind kind) { return LayerSpec{kind, "classifier." + std::to_string(index++)}; };
  for (int64_t h : c.classifier_hidden) {
    LayerSpec fc = classifier(LayerKind::Linear);
    fc.in_features = width;
    fc.out_features = h;
    layers.push_back(fc);
    layers.push_back(classifier(LayerKind::ReLU));
    layers.push_back(classifier(LayerKind::Dropout));
    width = h;
  }
  LayerSpec head = classifier(LayerKind::Linear);
  head.in_features = width;
  head.out_features = c.num_classes;
  layers.push_back(head);
  return layers;
}

}  // namespace lora::vision
