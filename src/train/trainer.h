#pragma once
// The training loop around a TrainableModel, with the conventions of Hugging Face's Trainer:
// epochs or max steps, batches padded to their longest example, gradient accumulation, AdamW with a
// warmup + decay schedule and global-norm clipping, periodic logging / evaluation / checkpoints, and
// an exact resume from any checkpoint (weights, optimizer state, step, data position, dropout RNG).
//
// Output folder, as Hugging Face Trainer + PEFT lay it out:
//   adapter_config.json, adapter_model.safetensors   the final LoRA adapter (full / freeze fine-tuning:
//                                                    a complete Hugging Face model folder instead)
//   trainer_state.json            step, data position, RNG state, log history
//   metrics.jsonl                 one JSON object per logged step / evaluation
//   checkpoint-STEP/              the same adapter (or model) + optimizer.safetensors + trainer_state.json
//   rank_allocation.png           AdaLoRA: the final ranks across layers and module types
//
// AdaLoRA (a LoRA config with adalora options): the orthogonal regularizer joins every step's gradient,
// the rank allocator runs after every optimizer step (its state goes into checkpoints), and the final
// adapter is saved sliced to the kept triplets with its rank_pattern.
//
// Data-parallel (a Communicator of several ranks, train/data_parallel.h): every rank trains on its share
// of each global batch, the gradients are summed over the ranks before clipping, so the optimizer step and
// AdaLoRA's scores (computed from the summed gradients) are the same on every rank. Rank 0 alone writes
// files; checkpoints hold the global data position, so a run resumes with any number of ranks.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/communicator.h"
#include "data/train_example.h"
#include "train/evaluate.h"
#include "train/trainable_model.h"

namespace lora {

struct TrainingArguments {
  std::string output_dir;
  int64_t num_epochs = 3;  // used when max_steps <= 0
  int64_t max_steps = -1;
  int64_t batch_size = 4;
  int64_t grad_accum = 1;
  double learning_rate = 2e-4;
  std::string lr_scheduler = "cosine";
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;  // used when warmup_steps is 0
  float weight_decay = 0.0f;
  double max_grad_norm = 1.0;  // <= 0: no clipping
  uint64_t seed = 42;
  int64_t logging_steps = 10;
  int64_t save_steps = 0;      // 0: only at the end
  int64_t eval_steps = 0;      // 0: only at the end (when there is an eval set)
  int64_t save_total_limit = 3;
  // Files (name -> contents) written into every checkpoint and the output folder, e.g. the run's
  // options as training_args.yaml.
  std::map<std::string, std::string> extra_files;
  // Data-parallel runs: the options every rank must share beyond these fields (e.g. the method), checked
  // at the start with the model and the data.
  std::string run_config;
};

struct StepLog {
  int64_t step = 0, total_steps = 0;
  double epoch = 0;
  double loss = 0, learning_rate = 0, grad_norm = 0, tokens_per_second = 0, elapsed_seconds = 0;
  int64_t steps_this_run = 0;  // optimizer steps since train() started (after a resume: since the resume)
  int64_t budget = -1;  // AdaLoRA: the rank budget b(step) in triplets; -1 otherwise
  double orth_reg = 0;  // AdaLoRA: the orthogonal regularizer added to the loss (not part of `loss`)
};

class RankAllocator;
class GradientAllReduce;

class Trainer {
 public:
  // `comm`: the ranks of a data-parallel run (null: this process alone); it must outlive the trainer.
  Trainer(TrainableModel& model, TrainingArguments args, std::vector<TrainExample> train_set,
          std::vector<TrainExample> eval_set = {}, Communicator* comm = nullptr);
  ~Trainer();

  int64_t total_steps() const { return total_steps_; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }

  // Trains to total_steps() — or until stop() — starting from `resume_from` (a checkpoint folder)
  // when given. Writes checkpoints and, at the end, the final adapter. A non-finite loss throws
  // lora::Error and leaves the checkpoints as they were. Returns true when the run completed.
  bool train(const std::string& resume_from = "");

  // Mean loss and perplexity over every counted token of a data set (no dropout), each rank taking its share.
  EvalResult evaluate(const std::vector<TrainExample>& data);

  // Asks the loop to save a checkpoint and return after the current step (from a signal handler).
  void stop() { stop_requested_ = true; }

  std::function<void(const StepLog&)> on_step;              // after every optimizer step
  std::function<void(int64_t step, const EvalResult&)> on_eval;
  std::function<void(const std::string& path)> on_save;

  const std::vector<StepLog>& history() const { return history_; }
  const std::vector<std::pair<int64_t, EvalResult>>& eval_history() const { return eval_history_; }
  // AdaLoRA runs: the allocator of the rank budget (final ranks, scores); null otherwise.
  const RankAllocator* rank_allocator() const { return rank_allocator_.get(); }
  // Saves a checkpoint of the current state into output_dir/checkpoint-STEP (atomically).
  std::string save_checkpoint();

 private:
  std::vector<size_t> epoch_order(int64_t epoch) const;
  void check_ranks_agree(bool resumed);
  void load_checkpoint(const std::string& dir);
  void save_weights(const std::string& dir) const;
  std::string state_json() const;
  void save_final();
  void write_metrics_line(const std::string& json_line);
  void prune_checkpoints();

  TrainableModel& model_;
  TrainingArguments args_;
  std::vector<TrainExample> train_set_, eval_set_;
  int64_t micro_per_epoch_ = 0, steps_per_epoch_ = 0, total_steps_ = 0;
  std::string data_fingerprint_;  // of the training set, checked on resume
  int64_t step_ = 0;          // optimizer steps done
  int64_t micro_cursor_ = 0;  // micro-batches consumed in all (epoch = cursor / micro_per_epoch_)
  int64_t last_saved_step_ = -1;
  std::vector<StepLog> history_;
  std::vector<std::pair<int64_t, EvalResult>> eval_history_;
  std::atomic<bool> stop_requested_{false};
  struct Optimizer;
  std::shared_ptr<Optimizer> optimizer_;
  std::shared_ptr<RankAllocator> rank_allocator_;
  std::unique_ptr<Communicator> own_comm_;  // when none was given
  Communicator* comm_ = nullptr;
  std::unique_ptr<GradientAllReduce> grad_allreduce_;
};

}  // namespace lora
