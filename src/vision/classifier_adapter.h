#pragma once
// What is trained on a frozen VggModel, in PEFT's terms: LoRA on the Conv2d and Linear modules named by
// target_modules (vision/lora_conv2d.h, adapters/lora_linear.h), and whole trained copies of the modules in
// modules_to_save (a new classifier head). Full fine-tuning is the case where every Conv2d and Linear is in
// modules_to_save. The base model is never changed.
//
// Saved as a PEFT adapter folder: adapter_config.json and adapter_model.safetensors with
//   base_model.model.<module>.lora_A.weight   Conv2d [r, C, kh, kw], Linear [r, in]
//   base_model.model.<module>.lora_B.weight   Conv2d [O, r, 1, 1],   Linear [out, r]
//   base_model.model.<module>.weight / .bias  (modules_to_save)
#include <memory>
#include <string>
#include <vector>

#include "adapters/lora_linear.h"
#include "train/trainable_model.h"
#include "vision/lora_conv2d.h"
#include "vision/vgg_model.h"

namespace lora::vision {

struct ClassifierLoraConfig {
  int64_t r = 8;
  float alpha = 16.0f;
  std::vector<std::string> target_modules;   // torchvision module names ("features.0", "classifier.3")
  std::vector<std::string> modules_to_save;  // trained whole ("classifier.6")
  std::string base_model_name_or_path;
};

struct AdaptedLayer {
  std::unique_ptr<LoraConv2d> conv;     // LoRA on a Conv2d
  std::unique_ptr<LoraLinear> linear;   // LoRA on a Linear
  bool trained_copy = false;            // in modules_to_save: weight/bias below replace the base's
  Tensor weight, bias, weight_grad, bias_grad;
  bool trainable() const { return conv || linear || trained_copy; }
};

struct ClassifierAdapter {
  ClassifierLoraConfig config;
  std::vector<AdaptedLayer> layers;  // one per model layer, in the model's order

  std::vector<Param> params();
  int64_t trainable_count() const;
  void zero_grad();
  int lowest_trainable_layer() const;  // index into layers; layers.size() when nothing is trained
};

// Every module named in the config must be a Conv2d or Linear of the model (lora::Error naming it otherwise).
// A is drawn from rng (PEFT's kaiming-uniform), B = 0, so the adapted model starts as the base.
ClassifierAdapter make_classifier_adapter(const VggModel& model, const ClassifierLoraConfig& config, uint64_t seed);
// modules_to_save = every Conv2d and Linear, no LoRA.
ClassifierAdapter make_full_finetune(const VggModel& model);

void save_classifier_adapter(const ClassifierAdapter& adapter, const VggModel& model, const std::string& dir);
// Reads a folder save_classifier_adapter writes (or PEFT writes for a torchvision VGG); FormatError naming
// the file and tensor when it does not fit the model.
ClassifierAdapter load_classifier_adapter(const VggModel& model, const std::string& dir);

// The model with the adapter folded in (W + s·B·A, trained copies swapped in), for saving full fine-tuning.
VggModel merge_classifier_adapter(const VggModel& model, const ClassifierAdapter& adapter);

}  // namespace lora::vision
