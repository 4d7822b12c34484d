#pragma once
// Training and evaluating a classifier's adapter on an ImageDataset: mini-batches in a seeded shuffled order,
// mean cross-entropy, AdamW (train/optimizer.h) over the adapter's parameters; the base model stays frozen.
#include <cstdint>
#include <functional>
#include <vector>

#include "vision/classifier_adapter.h"
#include "vision/image_dataset.h"
#include "vision/vgg_model.h"

namespace lora::vision {

struct ClassifierTrainOptions {
  int64_t epochs = 1;
  int64_t max_steps = 0;  // > 0: stop after this many steps (epochs then only bound the data order)
  int64_t batch_size = 32;
  float lr = 1e-3f;
  float weight_decay = 0.0f;
  uint64_t seed = 0;
};

struct TrainStepLog {
  int64_t step = 0, epoch = 0;
  double loss = 0;
};

struct ClassifierTrainReport {
  int64_t steps = 0, images = 0;
  double seconds = 0, last_loss = 0;
};

ClassifierTrainReport train_classifier(const VggModel& model, ClassifierAdapter& adapter, const ImageDataset& data,
                                       const ClassifierTrainOptions& options,
                                       const std::function<void(const TrainStepLog&)>& on_step = {});

struct ClassifierEval {
  int64_t images = 0, correct = 0;
  double accuracy() const { return images ? double(correct) / double(images) : 0.0; }
  std::vector<std::vector<int64_t>> confusion;  // [true class][predicted class]
  double class_accuracy(int64_t c) const;       // NaN-free: 0 for a class with no images
  int64_t class_images(int64_t c) const;
  // Accuracy over the images whose true class is in `classes`.
  double accuracy_over(const std::vector<int64_t>& classes) const;
};

ClassifierEval evaluate_classifier(const VggModel& model, ClassifierAdapter* adapter, const ImageDataset& data,
                                   int64_t batch_size = 64);

// The confusion matrix as a picture: one square per cell, darker for a larger share of the true class's row.
void write_confusion_png(const ClassifierEval& eval, const std::string& path);

}  // namespace lora::vision
