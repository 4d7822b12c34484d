// Image, IDX, model-folder and adapter-folder input for the image classifiers, and the errors on bad input: each
// one FormatError whose message names the file (and the tensor or the problem).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <fstream>

#include "core/error.h"
#include "formats/safetensors.h"
#include "grad_check.h"
#include "test_util.h"
#include "vision/classifier_adapter.h"
#include "vision/classifier_pass.h"
#include "vision/idx.h"
#include "vision/image_dataset.h"
#include "vision/image_io.h"
#include "vision/vgg_model.h"

using namespace lora;
using namespace lora::vision;
using lora::test::TempDir;

namespace {

const std::string kFashion = "/usr/share/datasets/fashion-mnist";

Image gradient_image(int64_t c, int64_t h, int64_t w) {
  Image img{c, h, w, std::vector<uint8_t>(size_t(c * h * w))};
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t((i * 7) % 256);
  return img;
}

void write_bytes(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

std::string idx_bytes(uint8_t type, std::vector<uint32_t> dims, size_t data) {
  std::string s{char(0), char(0), char(type), char(dims.size())};
  for (uint32_t d : dims)
    for (int k = 3; k >= 0; --k) s.push_back(char((d >> (8 * k)) & 0xff));
  s.append(data, char(1));
  return s;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const FormatError& e) {
    return e.what();
  }
  return "(no FormatError)";
}

VggConfig tiny_config(int64_t channels) {
  VggConfig c;
  c.features = {4, 0};
  c.in_channels = channels;
  c.avgpool_h = c.avgpool_w = 2;
  c.classifier_hidden = {6};
  c.num_classes = 3;
  return c;
}

}  // namespace

TEST(VisionImage, PngRoundTripAndTorchvisionTransforms) {
  TempDir tmp;
  const Image rgb = gradient_image(3, 5, 4);
  write_png(tmp / "a.png", rgb);
  const Image back = read_image(tmp / "a.png");
  EXPECT_EQ(back.channels, 3);
  EXPECT_EQ(back.height, 5);
  EXPECT_EQ(back.width, 4);
  EXPECT_EQ(back.pixels, rgb.pixels);
  Preprocess p{.resize = 0, .crop = 0, .mean = {0.5f, 0.25f, 0.0f}, .std = {0.5f, 0.25f, 1.0f}};
  const Tensor x = preprocess_image(back, p, 3, tmp / "a.png");
  ASSERT_EQ(x.shape(), (std::vector<int64_t>{3, 5, 4}));
  // ToTensor + Normalize: CHW, pixel / 255, (x − mean) / std.
  EXPECT_FLOAT_EQ(x.f32()[1 * 20 + 2 * 4 + 3], (rgb.pixels[(2 * 4 + 3) * 3 + 1] / 255.0f - 0.25f) / 0.25f);
  // Resize the shorter side 4 -> 8 (5 -> int(8·5/4) = 10), then a centre crop of 6.
  p.resize = 8;
  p.crop = 6;
  const Tensor r = preprocess_image(back, p, 3, tmp / "a.png");
  EXPECT_EQ(r.shape(), (std::vector<int64_t>{3, 6, 6}));
  // A constant image stays constant under bilinear resizing.
  Image flat{1, 3, 7, std::vector<uint8_t>(21, 51)};
  const Tensor f = preprocess_gray(flat.pixels.data(), 3, 7, Preprocess{.resize = 6});
  EXPECT_EQ(f.shape(), (std::vector<int64_t>{1, 6, 14}));
  for (int64_t i = 0; i < f.numel(); ++i) ASSERT_NEAR(f.f32()[i], 0.2f, 1e-6);
}

TEST(VisionBadInput, CorruptPngAndJpegNameTheFile) {
  TempDir tmp;
  write_png(tmp / "ok.png", gradient_image(1, 16, 16));
  std::string bytes = lora::test::read_text(tmp / "ok.png");
  write_bytes(tmp / "truncated.png", bytes.substr(0, bytes.size() / 2));
  for (size_t i = 40; i < bytes.size() - 12; ++i) bytes[i] = char(0x5a);
  write_bytes(tmp / "scrambled.png", bytes);
  write_bytes(tmp / "bad.jpg", std::string("\xFF\xD8\xFF\xE0garbage", 11));
  write_bytes(tmp / "text.png", "hello");
  for (const char* name : {"truncated.png", "scrambled.png", "bad.jpg", "text.png"}) {
    const std::string msg = error_of([&] { read_image(tmp / name); });
    EXPECT_NE(msg.find(tmp / name), std::string::npos) << msg;
  }
  EXPECT_NE(error_of([&] { read_image(tmp / "text.png"); }).find("not a PNG or JPEG"), std::string::npos);
  EXPECT_NE(error_of([&] { read_image(tmp / "missing.png"); }).find("cannot open"), std::string::npos);
}

TEST(VisionBadInput, WrongChannelCountNamesTheFile) {
  TempDir tmp;
  write_png(tmp / "rgb.png", gradient_image(3, 8, 8));
  const Image img = read_image(tmp / "rgb.png");
  const std::string msg = error_of([&] { preprocess_image(img, {}, 1, tmp / "rgb.png"); });
  EXPECT_NE(msg.find(tmp / "rgb.png"), std::string::npos) << msg;
  EXPECT_NE(msg.find("3 channels, the model takes 1"), std::string::npos) << msg;
  // Through an ImageFolder too.
  std::filesystem::create_directories(tmp / "data/cat");
  write_png(tmp / "data/cat/x.png", gradient_image(3, 8, 8));
  const std::string msg2 = error_of([&] { load_image_dataset(tmp / "data", tiny_config(1), {}); });
  EXPECT_NE(msg2.find("cat/x.png"), std::string::npos) << msg2;
}

TEST(VisionIdx, ReadsDebiansFashionMnist) {
  if (!std::filesystem::exists(kFashion + "/t10k-labels-idx1-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  const IdxArray labels = read_idx(kFashion + "/t10k-labels-idx1-ubyte.gz");
  ASSERT_EQ(labels.shape, (std::vector<int64_t>{10000}));
  // The first test labels of Fashion-MNIST: ankle boot, pullover, trouser, trouser, shirt.
  EXPECT_EQ(std::vector<uint8_t>(labels.data.begin(), labels.data.begin() + 5), (std::vector<uint8_t>{9, 2, 1, 1, 6}));
  const IdxArray images = read_idx(kFashion + "/t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(images.shape, (std::vector<int64_t>{10000, 28, 28}));
  VggConfig c = tiny_config(1);
  c.num_classes = 10;
  const ImageDataset d = load_image_dataset(kFashion, c, {.split = "t10k", .max_per_class = 3, .class_max = {{1, 0}}});
  EXPECT_EQ(d.size(), 27);
  EXPECT_EQ(d.images.shape(), (std::vector<int64_t>{27, 1, 28, 28}));
  EXPECT_EQ(d.labels[0], 9);
  EXPECT_EQ(std::count(d.labels.begin(), d.labels.end(), 1), 0);
  EXPECT_FLOAT_EQ(d.images.f32()[14 * 28 + 14], images.data[14 * 28 + 14] / 255.0f);
}

TEST(VisionBadInput, IdxWrongMagicOrSizeNamesTheFile) {
  TempDir tmp;
  write_bytes(tmp / "magic.idx", "\x12\x34\x08\x01" + std::string(8, '\0'));
  write_bytes(tmp / "type.idx", idx_bytes(0x0D, {4}, 16));
  write_bytes(tmp / "short.idx", idx_bytes(0x08, {10, 28, 28}, 10 * 28 * 28 - 1));
  write_bytes(tmp / "long.idx", idx_bytes(0x08, {3}, 4));
  write_bytes(tmp / "ok.idx", idx_bytes(0x08, {2, 3}, 6));
  EXPECT_NE(error_of([&] { read_idx(tmp / "magic.idx"); }).find("magic 12340801"), std::string::npos);
  EXPECT_NE(error_of([&] { read_idx(tmp / "type.idx"); }).find("element type 0x0d"), std::string::npos);
  for (const char* name : {"short.idx", "long.idx"}) {
    const std::string msg = error_of([&] { read_idx(tmp / name); });
    EXPECT_NE(msg.find(tmp / name), std::string::npos) << msg;
    EXPECT_NE(msg.find("header says"), std::string::npos) << msg;
  }
  EXPECT_EQ(read_idx(tmp / "ok.idx").shape, (std::vector<int64_t>{2, 3}));
}

TEST(VisionBadInput, StateDictThatDoesNotMatchTheConfigNamesFileAndTensor) {
  TempDir tmp;
  const VggModel model = random_vgg_model(tiny_config(1), 1);
  save_vgg_model(model, tmp / "m");
  const VggModel back = load_vgg_model(tmp / "m");
  EXPECT_EQ(back.layers.size(), model.layers.size());
  EXPECT_EQ(back.parameter_count(), model.parameter_count());
  const std::string st = tmp / "m/model.safetensors";
  auto state_with = [&](const std::function<void(std::map<std::string, Tensor>&)>& change) {
    const SafetensorsFile f = SafetensorsFile::open(tmp / "m/model.safetensors");
    std::map<std::string, Tensor> s;
    for (const auto& i : f.tensors()) s[i.name] = f.load(i.name).clone();
    change(s);
    save_safetensors(tmp / "m/model.safetensors.new", s);
  };
  state_with([](auto& s) { s["features.0.weight"] = Tensor(DType::F32, {4, 1, 5, 5}); });
  std::filesystem::rename(st + ".new", st);
  std::string msg = error_of([&] { load_vgg_model(tmp / "m"); });
  EXPECT_NE(msg.find(st), std::string::npos) << msg;
  EXPECT_NE(msg.find("features.0.weight has shape [4, 1, 5, 5], the config expects [4, 1, 3, 3]"), std::string::npos) << msg;
  state_with([](auto& s) { s.erase("features.0.weight"); });
  std::filesystem::rename(st + ".new", st);
  EXPECT_NE(error_of([&] { load_vgg_model(tmp / "m"); }).find("features.0.weight is missing"), std::string::npos);
  state_with([](auto& s) { s["features.0.weight"] = Tensor(DType::F32, {4, 1, 3, 3}); s["features.9.weight"] = Tensor(DType::F32, {2}); });
  std::filesystem::rename(st + ".new", st);
  EXPECT_NE(error_of([&] { load_vgg_model(tmp / "m"); }).find("features.9.weight [2] is not a module"), std::string::npos);
  lora::test::write_text(tmp / "m/config.json", "{\"architecture\": \"resnet50\"}");
  msg = error_of([&] { load_vgg_model(tmp / "m"); });
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
}

TEST(VisionAdapterIo, PeftFolderRoundTripsAndIsChecked) {
  TempDir tmp;
  const VggModel model = random_vgg_model(tiny_config(1), 2);
  ClassifierAdapter a = make_classifier_adapter(model, {.r = 2, .alpha = 4, .target_modules = {"features.0", "classifier.0"},
                                                        .modules_to_save = {"classifier.3"}}, 3);
  const auto v = lora::test::randn(size_t(a.layers[0].conv->lora_b.numel()), 4);
  std::copy(v.begin(), v.end(), a.layers[0].conv->lora_b.f32());
  save_classifier_adapter(a, model, tmp / "ad");
  const auto config = nlohmann::json::parse(lora::test::read_text(tmp / "ad/adapter_config.json"));
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["r"], 2);
  EXPECT_EQ(config["target_modules"], (std::vector<std::string>{"features.0", "classifier.0"}));
  const SafetensorsFile f = SafetensorsFile::open(tmp / "ad/adapter_model.safetensors");
  EXPECT_EQ(f.find("base_model.model.features.0.lora_A.weight")->shape, (std::vector<int64_t>{2, 1, 3, 3}));
  EXPECT_EQ(f.find("base_model.model.features.0.lora_B.weight")->shape, (std::vector<int64_t>{4, 2, 1, 1}));
  EXPECT_EQ(f.find("base_model.model.classifier.0.lora_A.weight")->shape, (std::vector<int64_t>{2, 16}));
  EXPECT_TRUE(f.has("base_model.model.classifier.3.weight"));
  ClassifierAdapter b = load_classifier_adapter(model, tmp / "ad");
  Tensor x(DType::F32, {2, 1, 6, 6});
  const auto xv = lora::test::randn(size_t(x.numel()), 5);
  std::copy(xv.begin(), xv.end(), x.f32());
  const Tensor ya = classifier_forward(model, &a, x, false, nullptr, nullptr);
  const Tensor yb = classifier_forward(model, &b, x, false, nullptr, nullptr);
  for (int64_t i = 0; i < ya.numel(); ++i) ASSERT_EQ(ya.f32()[i], yb.f32()[i]);
  // Merged weights give the adapted logits.
  const Tensor ym = classifier_forward(merge_classifier_adapter(model, a), nullptr, x, false, nullptr, nullptr);
  for (int64_t i = 0; i < ya.numel(); ++i) ASSERT_NEAR(ya.f32()[i], ym.f32()[i], 1e-5);
  // An adapter for another model: the tensor and the file are named.
  VggConfig other = tiny_config(1);
  other.features = {5, 0};
  const std::string msg = error_of([&] { load_classifier_adapter(random_vgg_model(other, 1), tmp / "ad"); });
  EXPECT_NE(msg.find("adapter_model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("features.0.lora_B.weight has shape [4, 2, 1, 1], the model needs [5, 2, 1, 1]"), std::string::npos) << msg;
  EXPECT_THROW(make_classifier_adapter(model, {.r = 2, .target_modules = {"features.1"}}, 0), Error);  // a ReLU
}
