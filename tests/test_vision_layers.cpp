// The vision layers against their naive references and finite differences: Conv2d (oneDNN) forward and both
// backward products, LoRA on a Conv2d in PEFT's layout, max and adaptive average pooling, ReLU, dropout,
// folded batch norm, cross-entropy, and the whole VGG pass with LoRA on a conv and a linear and a trained head.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "grad_check.h"
#include "vision/classifier_pass.h"
#include "vision/conv2d.h"
#include "vision/lora_conv2d.h"
#include "vision/pointwise.h"
#include "vision/pool.h"
#include "vision/softmax_cross_entropy.h"

using namespace lora;
using namespace lora::vision;
using lora::test::expect_gradient;

namespace {

Tensor random_tensor(std::vector<int64_t> shape, uint64_t seed, float scale = 1.0f) {
  Tensor t(DType::F32, std::move(shape));
  const auto v = lora::test::randn(size_t(t.numel()), seed, scale);
  std::copy(v.begin(), v.end(), t.f32());
  return t;
}

double weighted_sum(const Tensor& y, const Tensor& w) { return lora::test::dot(y.f32(), w.f32(), size_t(y.numel())); }

}  // namespace

TEST(VisionConv2d, ForwardMatchesReference) {
  for (auto [stride, padding] : {std::pair{1, 1}, std::pair{2, 0}, std::pair{2, 1}}) {
    const Conv2dShape s{.in_channels = 3, .out_channels = 5, .kernel_h = 3, .kernel_w = 3, .stride = stride, .padding = padding};
    const Tensor x = random_tensor({2, 3, 9, 8}, 1), w = random_tensor({5, 3, 3, 3}, 2), b = random_tensor({5}, 3);
    const Tensor y = conv2d_forward(s, x, w, &b), ref = conv2d_reference(s, x, w, &b);
    ASSERT_EQ(y.shape(), ref.shape());
    EXPECT_EQ(y.dim(2), (9 + 2 * padding - 3) / stride + 1);
    for (int64_t i = 0; i < y.numel(); ++i) ASSERT_NEAR(y.f32()[i], ref.f32()[i], 1e-4) << "stride " << stride << " i " << i;
  }
}

TEST(VisionConv2d, BackwardMatchesFiniteDifferences) {
  const Conv2dShape s{.in_channels = 2, .out_channels = 3, .kernel_h = 3, .kernel_w = 3, .stride = 2, .padding = 1};
  Tensor x = random_tensor({2, 2, 7, 6}, 4), w = random_tensor({3, 2, 3, 3}, 5), b = random_tensor({3}, 6);
  const Tensor probe = random_tensor(conv2d_reference(s, x, w, &b).shape(), 7);  // loss = <y, probe>
  auto loss = [&] { return weighted_sum(conv2d_reference(s, x, w, &b), probe); };
  Tensor dx(DType::F32, x.shape()), dw(DType::F32, w.shape()), db(DType::F32, b.shape());
  conv2d_backward_data(s, probe, w, dx, false);
  conv2d_backward_weights(s, x, probe, dw, &db);
  expect_gradient(x.f32(), size_t(x.numel()), dx.f32(), loss, "dx");
  expect_gradient(w.f32(), size_t(w.numel()), dw.f32(), loss, "dW");
  expect_gradient(b.f32(), size_t(b.numel()), db.f32(), loss, "db");
  // Accumulation adds to what is there.
  Tensor dx2 = dx.clone();
  conv2d_backward_data(s, probe, w, dx2, true);
  for (int64_t i = 0; i < dx.numel(); ++i) ASSERT_FLOAT_EQ(dx2.f32()[i], 2 * dx.f32()[i]);
}

TEST(VisionConv2d, LoraIsTheRankRKernelAndItsGradientsAreRight) {
  const Conv2dShape s{.in_channels = 3, .out_channels = 4, .kernel_h = 3, .kernel_w = 3, .stride = 1, .padding = 1};
  std::mt19937_64 rng(9);
  LoraConv2d l("features.0", s, 2, 8.0f / 2, rng);
  EXPECT_EQ(l.lora_a.shape(), (std::vector<int64_t>{2, 3, 3, 3}));
  EXPECT_EQ(l.lora_b.shape(), (std::vector<int64_t>{4, 2, 1, 1}));
  const float bound = 1.0f / std::sqrt(27.0f);
  for (int64_t i = 0; i < l.lora_a.numel(); ++i) ASSERT_LE(std::fabs(l.lora_a.f32()[i]), bound);
  Tensor x = random_tensor({2, 3, 5, 5}, 10), w = random_tensor({4, 3, 3, 3}, 11), b = random_tensor({4}, 12);
  Conv2dParams p{s, &w, &b, &l};
  // B = 0: the base conv exactly.
  const Tensor y0 = adapted_conv2d_forward(p, x, nullptr), base = conv2d_forward(s, x, w, &b);
  for (int64_t i = 0; i < y0.numel(); ++i) ASSERT_EQ(y0.f32()[i], base.f32()[i]);
  l.lora_b = random_tensor({4, 2, 1, 1}, 13);
  // With B != 0 it is the conv by W + s·B·A.
  Tensor merged = w.clone();
  const Tensor delta = l.delta_weight();
  for (int64_t i = 0; i < w.numel(); ++i) merged.f32()[i] += delta.f32()[i];
  const Tensor y = adapted_conv2d_forward(p, x, nullptr), ref = conv2d_reference(s, x, merged, &b);
  for (int64_t i = 0; i < y.numel(); ++i) ASSERT_NEAR(y.f32()[i], ref.f32()[i], 1e-4);

  const Tensor probe = random_tensor(y.shape(), 14);
  auto loss = [&] { return weighted_sum(adapted_conv2d_forward(p, x, nullptr), probe); };
  Conv2dSaved saved;
  adapted_conv2d_forward(p, x, &saved);
  const Tensor dx = adapted_conv2d_backward(p, x, probe, saved, true);
  expect_gradient(l.lora_a.f32(), size_t(l.lora_a.numel()), l.grad_a.f32(), loss, "dA");
  expect_gradient(l.lora_b.f32(), size_t(l.lora_b.numel()), l.grad_b.f32(), loss, "dB");
  expect_gradient(x.f32(), size_t(x.numel()), dx.f32(), loss, "dx");
}

TEST(VisionPool, MaxPoolForwardAndBackward) {
  Tensor x = random_tensor({2, 3, 6, 5}, 20);
  MaxPoolSaved saved;
  const Tensor y = maxpool2d_forward(x, 2, 2, &saved), ref = maxpool2d_reference(x, 2, 2);
  ASSERT_EQ(y.shape(), (std::vector<int64_t>{2, 3, 3, 2}));
  for (int64_t i = 0; i < y.numel(); ++i) ASSERT_EQ(y.f32()[i], ref.f32()[i]);
  const Tensor probe = random_tensor(y.shape(), 21);
  const Tensor dx = maxpool2d_backward(probe, 2, 2, saved);
  auto loss = [&] { return weighted_sum(maxpool2d_reference(x, 2, 2), probe); };
  expect_gradient(x.f32(), size_t(x.numel()), dx.f32(), loss, "dx", 1e-3f);
}

TEST(VisionPool, AdaptiveAvgPoolUsesTorchsOverlappingWindows) {
  // 5 -> 3: rows [0,2), [1,4), [3,5), as torch's adaptive_avg_pool2d.
  Tensor x(DType::F32, {1, 1, 5, 1});
  for (int i = 0; i < 5; ++i) x.f32()[i] = float(i * i);
  const Tensor y = adaptive_avgpool2d_forward(x, 3, 1);
  EXPECT_FLOAT_EQ(y.f32()[0], (0 + 1) / 2.0f);
  EXPECT_FLOAT_EQ(y.f32()[1], (1 + 4 + 9) / 3.0f);
  EXPECT_FLOAT_EQ(y.f32()[2], (9 + 16) / 2.0f);
  // 1 -> 7 replicates (VGG on a small image).
  Tensor one(DType::F32, {1, 2, 1, 1});
  one.f32()[0] = 3, one.f32()[1] = -1;
  const Tensor rep = adaptive_avgpool2d_forward(one, 7, 7);
  for (int i = 0; i < 49; ++i) {
    ASSERT_EQ(rep.f32()[i], 3.0f);
    ASSERT_EQ(rep.f32()[49 + i], -1.0f);
  }
  Tensor x2 = random_tensor({2, 2, 7, 5}, 22);
  const Tensor probe = random_tensor({2, 2, 3, 4}, 23);
  const Tensor dx = adaptive_avgpool2d_backward(probe, x2.shape());
  auto loss = [&] { return weighted_sum(adaptive_avgpool2d_forward(x2, 3, 4), probe); };
  expect_gradient(x2.f32(), size_t(x2.numel()), dx.f32(), loss, "dx");
}

TEST(VisionPointwise, ReluDropoutAndFoldedBatchNorm) {
  Tensor x = random_tensor({2, 3, 2, 2}, 30);
  Tensor y = x.clone();
  relu_forward(y);
  Tensor g = random_tensor(x.shape(), 31);
  Tensor dx = g.clone();
  relu_backward(y, dx);
  for (int64_t i = 0; i < x.numel(); ++i) {
    ASSERT_EQ(y.f32()[i], std::max(x.f32()[i], 0.0f));
    ASSERT_EQ(dx.f32()[i], x.f32()[i] > 0 ? g.f32()[i] : 0.0f);
  }
  std::mt19937_64 rng(1);
  Tensor d = Tensor(DType::F32, {1000});
  std::fill_n(d.f32(), 1000, 1.0f);
  Tensor keep;
  dropout_forward(d, 0.25f, rng, keep);
  int kept = 0;
  for (int i = 0; i < 1000; ++i) {
    kept += keep.data_as<uint8_t>()[i];
    ASSERT_FLOAT_EQ(d.f32()[i], keep.data_as<uint8_t>()[i] ? 1.0f / 0.75f : 0.0f);
  }
  EXPECT_NEAR(kept, 750, 60);

  Tensor gamma(DType::F32, {3}), beta(DType::F32, {3}), mean(DType::F32, {3}), var(DType::F32, {3});
  for (int c = 0; c < 3; ++c) gamma.f32()[c] = 1.5f + c, beta.f32()[c] = 0.1f * c, mean.f32()[c] = -0.2f * c, var.f32()[c] = 0.5f + c;
  const FoldedBatchNorm bn = fold_batchnorm(gamma, beta, mean, var, 1e-5f);
  Tensor z = x.clone();
  channel_affine_forward(bn, z);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int c = int((i / 4) % 3);
    const double want = (x.f32()[i] - mean.f32()[c]) / std::sqrt(var.f32()[c] + 1e-5) * gamma.f32()[c] + beta.f32()[c];
    ASSERT_NEAR(z.f32()[i], want, 1e-5);
  }
}

TEST(VisionLoss, CrossEntropyValueAndGradient) {
  Tensor z = random_tensor({3, 4}, 40, 2.0f);
  const std::vector<int32_t> labels{2, 0, 3};
  Tensor dz;
  const double loss = softmax_cross_entropy(z, labels, &dz);
  double want = 0;
  for (int n = 0; n < 3; ++n) {
    double s = 0;
    for (int c = 0; c < 4; ++c) s += std::exp(double(z.f32()[n * 4 + c]));
    want -= (double(z.f32()[n * 4 + labels[size_t(n)]]) - std::log(s)) / 3;
  }
  EXPECT_NEAR(loss, want, 1e-9);
  expect_gradient(z.f32(), 12, dz.f32(), [&] { return softmax_cross_entropy(z, labels, nullptr); }, "dlogits", 1e-3f);
  EXPECT_THROW(softmax_cross_entropy(z, {2, 0, 4}, nullptr), Error);
}

TEST(VisionPass, WholeNetworkGradientsMatchFiniteDifferences) {
  VggConfig c;
  c.features = {4, 0, 6};
  c.batch_norm = true;
  c.in_channels = 2;
  c.avgpool_h = c.avgpool_w = 3;
  c.classifier_hidden = {8};
  c.num_classes = 3;
  VggModel model = random_vgg_model(c, 1);
  // Non-trivial batch norm so its backward matters.
  for (auto& l : model.layers)
    if (l.spec.kind == LayerKind::BatchNorm2d)
      for (int64_t i = 0; i < l.spec.channels; ++i) l.bn.scale.f32()[i] = 0.5f + 0.3f * i, l.bn.shift.f32()[i] = 0.1f;
  for (auto& l : model.layers)
    if (l.spec.kind == LayerKind::Linear) l.weight = random_tensor(l.weight.shape(), 50, 0.3f);
  ClassifierLoraConfig lc{.r = 2, .alpha = 4, .target_modules = {"features.0", "classifier.0"},
                          .modules_to_save = {"classifier.3"}};
  ClassifierAdapter a = make_classifier_adapter(model, lc, 7);
  ASSERT_TRUE(a.layers[0].conv && a.layers[model.layers.size() - 4].linear && a.layers.back().trained_copy);
  a.layers[0].conv->lora_b = random_tensor({4, 2, 1, 1}, 51, 0.5f);
  a.layers[model.layers.size() - 4].linear->lora_b = random_tensor({8, 2}, 52, 0.5f);
  const Tensor x = random_tensor({2, 2, 8, 8}, 53);
  const std::vector<int32_t> labels{1, 2};
  auto loss = [&] { return softmax_cross_entropy(classifier_forward(model, &a, x, false, nullptr, nullptr), labels, nullptr); };
  PassSaved saved;
  Tensor dlogits;
  softmax_cross_entropy(classifier_forward(model, &a, x, false, nullptr, &saved), labels, &dlogits);
  a.zero_grad();
  classifier_backward(model, a, dlogits, saved);
  for (Param& p : a.params()) expect_gradient(p.value->f32(), size_t(p.value->numel()), p.grad->f32(), loss, p.name.c_str(), 1e-3f, 5e-3);
  EXPECT_EQ(a.trainable_count(), 2 * 2 * 9 + 4 * 2 + 2 * 6 * 9 + 8 * 2 + 3 * 8 + 3);
}
