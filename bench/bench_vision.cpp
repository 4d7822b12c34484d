// Images/s of a torchvision VGG (random weights) at 224x224: inference, and one LoRA training step (LoRA r=8 on
// every Conv2d and Linear but the head, the head in modules_to_save: forward, cross-entropy, backward, AdamW).
// bench/pytorch_vision_baseline.py measures the same in PyTorch.
//
//   bench_vision [--arch vgg11] [--batch 8] [--iters 3]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "train/optimizer.h"
#include "vision/classifier_adapter.h"
#include "vision/classifier_pass.h"
#include "vision/softmax_cross_entropy.h"
#include "vision/vgg_model.h"

using namespace lora;
using namespace lora::vision;

int main(int argc, char** argv) {
  std::string arch = "vgg11";
  int64_t batch = 8, iters = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--arch")) arch = argv[i + 1];
    else if (!std::strcmp(argv[i], "--batch")) batch = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--iters")) iters = std::stoll(argv[i + 1]);
  }
  VggConfig c;
  c.architecture = arch;
  const std::string base = arch.ends_with("_bn") ? arch.substr(0, arch.size() - 3) : arch;
  const std::map<std::string, std::vector<int64_t>> features{
      {"vgg11", {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0}},
      {"vgg16", {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0}}};
  c.features = features.at(base);
  c.batch_norm = arch.ends_with("_bn");
  const VggModel model = random_vgg_model(c, 1);
  Tensor x(DType::F32, {batch, 3, 224, 224});
  std::mt19937_64 rng(2);
  std::normal_distribution<float> d;
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = d(rng);
  std::vector<int32_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(int32_t(i * 37 % 1000));

  auto seconds = [](auto f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  classifier_forward(model, nullptr, x, false, nullptr, nullptr);  // warm-up (primitive creation)
  double t = 0;
  for (int64_t i = 0; i < iters; ++i) t += seconds([&] { classifier_forward(model, nullptr, x, false, nullptr, nullptr); });
  std::printf("%s 224x224 batch %ld inference: %.2f images/s\n", arch.c_str(), long(batch), double(batch * iters) / t);

  std::vector<std::string> targets;
  for (const auto& l : model.layers)
    if ((l.spec.kind == LayerKind::Conv2d || l.spec.kind == LayerKind::Linear) && l.spec.name != "classifier.6")
      targets.push_back(l.spec.name);
  ClassifierAdapter a = make_classifier_adapter(model, {.r = 8, .alpha = 16, .target_modules = targets,
                                                        .modules_to_save = {"classifier.6"}}, 3);
  std::vector<Param> params = a.params();
  AdamW opt(params, {});
  auto step = [&] {
    PassSaved saved;
    const Tensor logits = classifier_forward(model, &a, x, true, &rng, &saved);
    Tensor dlogits;
    softmax_cross_entropy(logits, labels, &dlogits);
    a.zero_grad();
    classifier_backward(model, a, dlogits, saved);
    opt.step(params, 1e-4f);
  };
  step();
  t = 0;
  for (int64_t i = 0; i < iters; ++i) t += seconds(step);
  std::printf("%s 224x224 batch %ld LoRA r=8 training step: %.2f images/s (%ld trainable parameters)\n", arch.c_str(),
              long(batch), double(batch * iters) / t, long(a.trainable_count()));
}
