// lora.cpp's VGG against torchvision (tests/python/vision_reference.py, Debian's python3-torch and
// python3-torchvision): random-weight VGG11 and VGG19-BN read from torchvision state dicts give the same logits,
// and a LoRA adapter on a Conv2d and a Linear plus a trained head, written by us in PEFT's layout and applied by a
// PyTorch reimplementation of PEFT's LoRA layers, gives the same logits and the same gradients as autograd.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "formats/safetensors.h"
#include "grad_check.h"
#include "test_util.h"
#include "vision/classifier_adapter.h"
#include "vision/classifier_pass.h"
#include "vision/softmax_cross_entropy.h"
#include "vision/vgg_model.h"

using namespace lora;
using namespace lora::vision;

namespace {

std::string vision_reference() { return lora::test::python() + " " + LORA_PYTHON_DIR + "/vision_reference.py "; }

bool torchvision_available() {
  return lora::test::run(lora::test::python() + " -c 'import torchvision'").exit_code == 0;
}

void make_model(const std::string& arch, const std::string& classifier, const std::string& dir) {
  const auto r = lora::test::run(vision_reference() + "make-model --arch " + arch + " --classifier " + classifier +
                                 " --num-classes 10 --seed 3 --out " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

// x [2, 3, 32, 32]: 32 pixels become 1x1 after VGG's five pools, so the adaptive pool to 7x7 replicates.
Tensor write_input(const std::string& path, std::vector<int32_t>& labels) {
  Tensor x(DType::F32, {2, 3, 32, 32});
  const auto v = lora::test::randn(size_t(x.numel()), 77);
  std::copy(v.begin(), v.end(), x.f32());
  labels = {3, 7};
  Tensor l(DType::I32, {2});
  l.data_as<int32_t>()[0] = 3, l.data_as<int32_t>()[1] = 7;
  save_safetensors(path, {{"x", x}, {"labels", l}});
  return x;
}

// |a − b| <= tol · max(1, max|b|) element-wise.
void expect_close(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  double scale = 1.0;
  for (int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, double(std::fabs(b.f32()[i])));
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::fabs(double(a.f32()[i]) - b.f32()[i]));
  EXPECT_LE(worst, tol * scale) << what << ": max |difference| " << worst << " at scale " << scale;
}

// Gradients: within tol relative to the tensor's largest gradient.
void expect_close_relative(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  double scale = 0;
  for (int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, double(std::fabs(b.f32()[i])));
  ASSERT_GT(scale, 0) << what << " is all zero in the reference";
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::fabs(double(a.f32()[i]) - b.f32()[i]));
  EXPECT_LE(worst / scale, tol) << what << ": max relative difference " << worst / scale;
}

// One torchvision VGG11 (its real 4096-wide classifier, 133M weights: writing and reading it is most of the
// suite's time) shared by the tests.
class VisionOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!torchvision_available()) return;
    shared_ = new lora::test::TempDir;
    make_model("vgg11", "4096,4096", *shared_ / "vgg11");
  }
  static void TearDownTestSuite() {
    delete shared_;
    shared_ = nullptr;
  }
  void SetUp() override {
    if (!shared_) GTEST_SKIP() << "python3-torchvision is not installed";
  }
  static std::string vgg11() { return *shared_ / "vgg11"; }
  static inline lora::test::TempDir* shared_ = nullptr;
  lora::test::TempDir tmp;
};

}  // namespace

TEST_F(VisionOracle, Vgg11AndVgg19BnLogitsMatchTorchvision) {
  std::vector<int32_t> labels;
  const Tensor x = write_input(tmp / "input.safetensors", labels);
  // VGG19-BN with a narrower classifier (same module names): its features are what differs from VGG11.
  make_model("vgg19_bn", "256,256", tmp / "vgg19_bn");
  for (const std::string arch : {"vgg11", "vgg19_bn"}) {
    const std::string dir = arch == "vgg11" ? vgg11() : tmp / arch;
    const VggModel model = load_vgg_model(dir);
    EXPECT_EQ(model.config.batch_norm, arch == "vgg19_bn");
    const Tensor logits = classifier_forward(model, nullptr, x, false, nullptr, nullptr);
    const auto r = lora::test::run(vision_reference() + "run --model " + dir + " --input " + (tmp / "input.safetensors") +
                                   " --out " + (tmp / "out.safetensors"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const SafetensorsFile ref = SafetensorsFile::open(tmp / "out.safetensors");
    expect_close(logits, ref.load("logits"), 1e-4, arch + " logits");
  }
}

TEST_F(VisionOracle, LoraOnConvAndLinearMatchesAutograd) {
  std::vector<int32_t> labels;
  const Tensor x = write_input(tmp / "input.safetensors", labels);
  const VggModel model = load_vgg_model(vgg11());
  ClassifierLoraConfig lc{.r = 4, .alpha = 8, .target_modules = {"features.3", "classifier.3"},
                          .modules_to_save = {"classifier.6"}};
  ClassifierAdapter a = make_classifier_adapter(model, lc, 5);
  // B != 0 so the adapter changes the logits and A gets a gradient.
  for (auto& l : a.layers) {
    Tensor* b = l.conv ? &l.conv->lora_b : l.linear ? &l.linear->lora_b : nullptr;
    if (!b) continue;
    const auto v = lora::test::randn(size_t(b->numel()), 9, 0.05f);
    std::copy(v.begin(), v.end(), b->f32());
  }
  save_classifier_adapter(a, model, tmp / "adapter");
  const auto r = lora::test::run(vision_reference() + "run --model " + vgg11() + " --adapter " + (tmp / "adapter") +
                                 " --input " + (tmp / "input.safetensors") + " --out " + (tmp / "out.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const SafetensorsFile ref = SafetensorsFile::open(tmp / "out.safetensors");

  PassSaved saved;
  const Tensor logits = classifier_forward(model, &a, x, false, nullptr, &saved);
  expect_close(logits, ref.load("logits"), 1e-4, "adapted logits");
  const Tensor base = classifier_forward(model, nullptr, x, false, nullptr, nullptr);
  double moved = 0;
  for (int64_t i = 0; i < base.numel(); ++i) moved = std::max(moved, double(std::fabs(base.f32()[i] - logits.f32()[i])));
  EXPECT_GT(moved, 1e-3) << "the adapter should change the logits";
  Tensor dlogits;
  const double loss = softmax_cross_entropy(logits, labels, &dlogits);
  EXPECT_NEAR(loss, ref.load("loss").f32()[0], 1e-4);
  a.zero_grad();
  classifier_backward(model, a, dlogits, saved);
  const size_t conv = 3, linear = model.layers.size() - 4, head = model.layers.size() - 1;
  ASSERT_TRUE(a.layers[conv].conv && a.layers[linear].linear && a.layers[head].trained_copy);
  const std::string p = "grad.base_model.model.";
  expect_close_relative(a.layers[conv].conv->grad_a, ref.load(p + "features.3.lora_A.weight"), 1e-4, "conv dA");
  expect_close_relative(a.layers[conv].conv->grad_b, ref.load(p + "features.3.lora_B.weight"), 1e-4, "conv dB");
  expect_close_relative(a.layers[linear].linear->grad_a, ref.load(p + "classifier.3.lora_A.weight"), 1e-4, "linear dA");
  expect_close_relative(a.layers[linear].linear->grad_b, ref.load(p + "classifier.3.lora_B.weight"), 1e-4, "linear dB");
  expect_close_relative(a.layers[head].weight_grad, ref.load(p + "classifier.6.weight"), 1e-4, "head dW");
  expect_close_relative(a.layers[head].bias_grad, ref.load(p + "classifier.6.bias"), 1e-4, "head db");
}
