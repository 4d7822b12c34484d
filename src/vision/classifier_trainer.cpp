#include "vision/classifier_trainer.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>

#include "core/error.h"
#include "train/optimizer.h"
#include "vision/classifier_pass.h"
#include "vision/image_io.h"
#include "vision/softmax_cross_entropy.h"

namespace lora::vision {

ClassifierTrainReport train_classifier(const VggModel& model, ClassifierAdapter& adapter, const ImageDataset& data,
                                       const ClassifierTrainOptions& o,
                                       const std::function<void(const TrainStepLog&)>& on_step) {
  if (data.size() == 0) fail("no training images");
  if (o.batch_size <= 0) fail("batch size must be positive, got {}", o.batch_size);
  std::vector<Param> params = adapter.params();
  if (params.empty()) fail("nothing to train: give --target modules for LoRA or --modules-to-save");
  AdamW optimizer(params, AdamWConfig{.weight_decay = o.weight_decay});
  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> order(size_t(data.size()));
  ClassifierTrainReport report;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t epoch = 0; epoch < std::max<int64_t>(o.epochs, 1) || (o.max_steps > 0 && report.steps < o.max_steps);
       ++epoch) {
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t b = 0; b < order.size(); b += size_t(o.batch_size)) {
      if (o.max_steps > 0 && report.steps >= o.max_steps) break;
      const std::vector<int64_t> idx(order.begin() + long(b), order.begin() + long(std::min(order.size(), b + size_t(o.batch_size))));
      std::vector<int32_t> labels;
      for (int64_t i : idx) labels.push_back(data.labels[size_t(i)]);
      PassSaved saved;
      const Tensor logits = classifier_forward(model, &adapter, data.batch(idx), true, &rng, &saved);
      Tensor dlogits;
      const double loss = softmax_cross_entropy(logits, labels, &dlogits);
      adapter.zero_grad();
      classifier_backward(model, adapter, dlogits, saved);
      optimizer.step(params, o.lr);
      ++report.steps;
      report.images += int64_t(idx.size());
      report.last_loss = loss;
      if (on_step) on_step({report.steps, epoch, loss});
    }
    if (o.max_steps > 0 && report.steps >= o.max_steps) break;
    if (o.max_steps <= 0 && epoch + 1 >= o.epochs) break;
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

double ClassifierEval::class_accuracy(int64_t c) const {
  const int64_t n = class_images(c);
  return n ? double(confusion[size_t(c)][size_t(c)]) / double(n) : 0.0;
}

int64_t ClassifierEval::class_images(int64_t c) const {
  return std::accumulate(confusion[size_t(c)].begin(), confusion[size_t(c)].end(), int64_t(0));
}

double ClassifierEval::accuracy_over(const std::vector<int64_t>& classes) const {
  int64_t n = 0, right = 0;
  for (int64_t c : classes) n += class_images(c), right += confusion[size_t(c)][size_t(c)];
  return n ? double(right) / double(n) : 0.0;
}

ClassifierEval evaluate_classifier(const VggModel& model, ClassifierAdapter* adapter, const ImageDataset& data,
                                   int64_t batch_size) {
  const int64_t classes = model.config.num_classes;
  ClassifierEval e;
  e.confusion.assign(size_t(classes), std::vector<int64_t>(size_t(classes), 0));
  for (int64_t b = 0; b < data.size(); b += batch_size) {
    std::vector<int64_t> idx;
    for (int64_t i = b; i < std::min(data.size(), b + batch_size); ++i) idx.push_back(i);
    const Tensor logits = classifier_forward(model, adapter, data.batch(idx), false, nullptr, nullptr);
    for (size_t k = 0; k < idx.size(); ++k) {
      const float* z = logits.f32() + int64_t(k) * classes;
      const int64_t pred = std::max_element(z, z + classes) - z;
      const int32_t truth = data.labels[size_t(idx[k])];
      ++e.confusion[size_t(truth)][size_t(pred)];
      e.correct += pred == truth;
      ++e.images;
    }
  }
  return e;
}

void write_confusion_png(const ClassifierEval& eval, const std::string& path) {
  const int64_t n = int64_t(eval.confusion.size()), cell = 24;
  Image img{1, n * cell, n * cell, std::vector<uint8_t>(size_t(n * cell * n * cell), 255)};
  for (int64_t t = 0; t < n; ++t) {
    const int64_t row = eval.class_images(t);
    for (int64_t p = 0; p < n; ++p) {
      const double share = row ? double(eval.confusion[size_t(t)][size_t(p)]) / double(row) : 0.0;
      const uint8_t v = uint8_t(255.0 - 255.0 * share);
      for (int64_t i = 1; i < cell; ++i)
        for (int64_t j = 1; j < cell; ++j) img.pixels[size_t((t * cell + i) * n * cell + p * cell + j)] = v;
    }
  }
  write_png(path, img);
}

}  // namespace lora::vision
