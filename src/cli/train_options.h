#pragma once
// Every knob of `lora train`, spelled as LLaMA-Factory and mlx-lm users expect, and what they build:
// the LoRA configuration, the trainable model and the trainer's arguments.
//
// To add a method (QLoRA's --quantize, AdaLoRA's --method adalora ...): options go into MethodOptions
// and add_method_options(); the base model is loaded in load_base_model() and wrapped for training in
// build_trainable_model(), the one place each.
#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "adapters/lora_config.h"
#include "cli/common.h"
#include "cli/data_options.h"
#include "train/trainable_model.h"
#include "train/trainer.h"

namespace lora::cli {

struct MethodOptions {
  std::string finetuning_type = "lora";  // lora, full, freeze
  int64_t freeze_layers = 2;             // freeze: how many of the last layers train
  int64_t rank = 8;
  float alpha = 16.0f;
  float dropout = 0.0f;
  std::vector<std::string> target = {"all-linear"};
  std::string init = "true";
  bool rslora = false, dora = false;
  std::vector<std::string> modules_to_save;
  std::string bias = "none";
  bool gradient_checkpointing = false;
  // AdaLoRA (--method adalora): SVD-shaped adapters whose rank budget is reallocated while training
  std::string method = "lora";  // lora, adalora
  AdaLoraOptions adalora;
};

struct TrainOptions {
  ModelOptions model;
  DataOptions data;
  MethodOptions method;
  double lr = 2e-4;
  std::string lr_scheduler = "cosine";
  double warmup = 0;  // steps (>= 1) or a ratio of the total (< 1)
  int64_t epochs = 3;
  int64_t max_steps = -1;
  int64_t batch_size = 4;
  int64_t grad_accum = 1;
  float weight_decay = 0.0f;
  double max_grad_norm = 1.0;
  int64_t seed = 42;
  std::string output;
  std::string resume;
  std::string config;
  int64_t save_steps = 500;
  int64_t save_total_limit = 3;
  int64_t logging_steps = 10;
  int64_t eval_steps = 0;
  bool overwrite_output_dir = false;
  bool plot_loss = true;
  bool profile = false;  // print where the time of a step goes (not recorded in training_args.yaml)
  double mpi_timeout = 300;  // under mpirun: seconds a rank waits for the others before it stops the run
};

void add_train_options(CLI::App* cmd, TrainOptions& o);

// Checks every name and value that needs no file (template, format, target modules, schedule ...),
// so that mistakes are reported before anything is loaded or written.
void validate_train_options(const TrainOptions& o);

LoraConfig lora_config(const MethodOptions& m);
Model load_base_model(const TrainOptions& o);
TrainableModel build_trainable_model(const MethodOptions& m, const Model& base, uint64_t seed);
TrainingArguments training_arguments(const TrainOptions& o);
// "LoRA r=8, alpha=16 on all-linear", "full fine-tuning" ...
std::string method_summary(const MethodOptions& m);

}  // namespace lora::cli
