#include "cli/train_options.h"

#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "train/lr_schedule.h"

namespace lora::cli {

namespace {

void add_method_options(CLI::App* cmd, MethodOptions& m) {
  const char* g = "Method";
  cmd->add_option("--finetuning-type", m.finetuning_type,
                  "lora: train an adapter; full: train every weight; freeze: train only the last --freeze-layers layers")
      ->capture_default_str()->check(CLI::IsMember({"lora", "full", "freeze"}))->group(g);
  cmd->add_option("--freeze-layers", m.freeze_layers, "freeze: how many of the last layers train")
      ->capture_default_str()->check(CLI::PositiveNumber)->group(g);
  cmd->add_option("-r,--rank", m.rank, "LoRA rank r")->capture_default_str()->check(CLI::PositiveNumber)->group(g);
  cmd->add_option("--alpha", m.alpha, "LoRA alpha: the update is scaled by alpha / r")->capture_default_str()->group(g);
  cmd->add_option("--dropout", m.dropout, "LoRA dropout")->capture_default_str()->check(CLI::Range(0.0f, 0.99f))->group(g);
  cmd->add_option("--target", m.target,
                  "modules that get a LoRA: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, embed_tokens, "
                  "lm_head, or all-linear (every linear layer but lm_head)")
      ->capture_default_str()->delimiter(',')->group(g);
  cmd->add_option("--init", m.init, "LoRA initialization (PEFT init_lora_weights): true, gaussian or pissa")
      ->capture_default_str()->check(CLI::IsMember({"true", "gaussian", "pissa"}))->group(g);
  cmd->add_flag("--rslora", m.rslora, "rank-stabilized LoRA: scale by alpha / sqrt(r)")->default_str("false")->group(g);
  cmd->add_flag("--dora", m.dora, "DoRA: weight-decomposed LoRA")->default_str("false")->group(g);
  cmd->add_option("--modules-to-save", m.modules_to_save, "modules trained in full beside the adapter: lm_head, embed_tokens (default: none)")
      ->delimiter(',')->group(g);
  cmd->add_option("--bias", m.bias, "biases that train: none, all, lora_only")
      ->capture_default_str()->check(CLI::IsMember({"none", "all", "lora_only"}))->group(g);
  const char* a = "AdaLoRA (--method adalora)";
  cmd->add_option("--method", m.method,
                  "adapter kind when --finetuning-type is lora: lora, or adalora (SVD-shaped, ranks reallocated by "
                  "importance while training; --rank is not used, --init-r and --target-r are)")
      ->capture_default_str()->check(CLI::IsMember({"lora", "adalora"}))->group(a);
  AdaLoraOptions& ad = m.adalora;
  cmd->add_option("--init-r", ad.init_r, "initial rank of every adapted matrix")->capture_default_str()
      ->check(CLI::PositiveNumber)->group(a);
  cmd->add_option("--target-r", ad.target_r, "average rank per matrix at the end (the budget is target_r x matrices)")
      ->capture_default_str()->check(CLI::PositiveNumber)->group(a);
  cmd->add_option("--tinit", ad.tinit, "steps of warmup before the budget starts shrinking")->capture_default_str()
      ->check(CLI::NonNegativeNumber)->group(a);
  cmd->add_option("--tfinal", ad.tfinal, "last steps trained with the final, fixed ranks")->capture_default_str()
      ->check(CLI::NonNegativeNumber)->group(a);
  cmd->add_option("--delta-t", ad.delta_t, "steps between two reallocations")->capture_default_str()
      ->check(CLI::PositiveNumber)->group(a);
  cmd->add_option("--beta1", ad.beta1, "EMA factor of the sensitivity")->capture_default_str()->check(CLI::Range(0.0, 1.0))->group(a);
  cmd->add_option("--beta2", ad.beta2, "EMA factor of the uncertainty")->capture_default_str()->check(CLI::Range(0.0, 1.0))->group(a);
  cmd->add_option("--orth-reg-weight", ad.orth_reg_weight, "weight of the orthogonal regularization of A and B")
      ->capture_default_str()->check(CLI::PositiveNumber)->group(a);
  cmd->add_option("--total-step", ad.total_step, "steps of the budget schedule (0: the run's total steps)")
      ->capture_default_str()->check(CLI::NonNegativeNumber)->group(a);
  cmd->add_flag("--gradient-checkpointing", m.gradient_checkpointing,
                "recompute activations in the backward pass: less memory, ~30% more compute")->default_str("false")
      ->group(g);
}

}  // namespace

void add_train_options(CLI::App* cmd, TrainOptions& o) {
  cmd->add_option("-c,--config", o.config,
                  "YAML file with any of these options as keys (max_seq_len: 512, lr: 1e-4 ...); flags given here win")
      ->check(CLI::ExistingFile);
  o.model.add_to(cmd, false);
  cmd->get_option("--model")->description("Hugging Face folder, .gguf file or llama2.c .bin checkpoint (required)");
  o.data.add_to(cmd, true);
  add_method_options(cmd, o.method);

  const char* g = "Training";
  cmd->add_option("--lr", o.lr, "peak learning rate (AdamW)")->capture_default_str()->check(CLI::PositiveNumber)->group(g);
  cmd->add_option("--lr-scheduler", o.lr_scheduler, "learning-rate schedule after warmup: constant, linear, cosine")
      ->capture_default_str()->check(CLI::IsMember({"constant", "linear", "cosine"}))->group(g);
  cmd->add_option("--warmup", o.warmup, "warmup: a number of steps (>= 1) or a ratio of all steps (< 1)")
      ->capture_default_str()->check(CLI::NonNegativeNumber)->group(g);
  cmd->add_option("--epochs", o.epochs, "passes over the training data (when --max-steps is not set)")
      ->capture_default_str()->check(CLI::PositiveNumber)->group(g);
  cmd->add_option("--max-steps", o.max_steps, "optimizer steps in all; overrides --epochs when > 0")->capture_default_str()->group(g);
  cmd->add_option("-b,--batch-size", o.batch_size, "sequences per micro-batch (padded to the longest)")
      ->capture_default_str()->check(CLI::PositiveNumber)->group(g);
  cmd->add_option("--grad-accum", o.grad_accum, "micro-batches per optimizer step")
      ->capture_default_str()->check(CLI::PositiveNumber)->group(g);
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW weight decay")->capture_default_str()->check(CLI::NonNegativeNumber)->group(g);
  cmd->add_option("--max-grad-norm", o.max_grad_norm, "clip gradients to this global norm (0: no clipping)")
      ->capture_default_str()->check(CLI::NonNegativeNumber)->group(g);
  cmd->add_option("--seed", o.seed, "seed of the adapter init, data order, validation split and dropout")
      ->capture_default_str()->group(g);

  const char* out = "Output";
  cmd->add_option("-o,--output", o.output,
                  "output folder: the adapter (or model), checkpoint-STEP folders, metrics.jsonl, training_loss.png "
                  "(required, except with --resume: the checkpoint's folder)")
      ->group(out);
  cmd->add_option("--save-steps", o.save_steps, "save a checkpoint every N steps (0: only at the end)")
      ->capture_default_str()->check(CLI::NonNegativeNumber)->group(out);
  cmd->add_option("--save-total-limit", o.save_total_limit, "keep only the last K checkpoints (0: keep all)")
      ->capture_default_str()->check(CLI::NonNegativeNumber)->group(out);
  cmd->add_option("--logging-steps", o.logging_steps, "log the loss every N steps (metrics.jsonl, and the log lines "
                  "when stderr is not a terminal)")
      ->capture_default_str()->check(CLI::PositiveNumber)->group(out);
  cmd->add_option("--eval-steps", o.eval_steps, "evaluate on the validation data every N steps (0: only at the end)")
      ->capture_default_str()->check(CLI::NonNegativeNumber)->group(out);
  cmd->add_option("--resume", o.resume,
                  "continue from OUTDIR/checkpoint-STEP exactly where it stopped, or from the newest complete "
                  "checkpoint of a run folder OUTDIR; options not given are taken from its training_args.yaml")
      ->group(out);
  cmd->add_flag("--overwrite-output-dir", o.overwrite_output_dir,
                "start over in an output folder that holds a previous run; otherwise that is an error")->default_str("false")
      ->group(out);
  cmd->add_flag("--plot-loss,!--no-plot-loss", o.plot_loss, "write training_loss.png at the end")->default_str("true")->group(out);
  cmd->add_flag("--profile", o.profile,
                "at the end, print where the time of a step went: ms and share of each kernel family (GEMMs, LoRA "
                "products, attention, norms, loss, optimizer ...), mean over the steps after the first")
      ->default_str("false")->group(out);
  cmd->add_option("--mpi-timeout", o.mpi_timeout,
                  "under mpirun: seconds a rank waits in an all-reduce for the others (one died or hangs) before it "
                  "stops every rank with an error")
      ->capture_default_str()->check(CLI::PositiveNumber)->group(out);
}

LoraConfig lora_config(const MethodOptions& m) {
  LoraConfig c;
  c.r = m.rank;
  c.lora_alpha = m.alpha;
  c.lora_dropout = m.dropout;
  c.target_modules.clear();
  for (const std::string& t : m.target) c.target_modules.push_back(t == "all" ? "all-linear" : t);
  c.use_rslora = m.rslora;
  c.use_dora = m.dora;
  c.init_lora_weights = m.init;
  c.bias = m.bias;
  c.modules_to_save = m.modules_to_save;
  if (m.method == "adalora") c.adalora = m.adalora;
  return c;
}

void validate_train_options(const TrainOptions& o) {
  if (o.model.model.empty()) fail("lora train: no model; give -m MODEL (or model: in the config file)");
  if (o.data.data.empty()) fail("lora train: no data; give -d FILE (or data: in the config file)");
  if (o.output.empty() && o.resume.empty()) fail("lora train: no output folder; give -o OUTDIR (or output: in the config file)");
  o.data.validate();
  if (o.method.finetuning_type == "lora") {
    const LoraConfig c = lora_config(o.method);
    c.validate();
    if (c.target_modules.empty()) fail("--target: no module given");
  }
  LrSchedule{o.lr_scheduler, o.lr, 0, 1}.validate();
  if (o.max_steps <= 0 && o.epochs <= 0) fail("nothing to train: --epochs and --max-steps are both 0");
}

Model load_base_model(const TrainOptions& o) { return o.model.load(true); }

TrainableModel build_trainable_model(const MethodOptions& m, const Model& base, uint64_t seed) {
  TrainableModel model = m.finetuning_type == "full"     ? TrainableModel::full(base)
                         : m.finetuning_type == "freeze" ? TrainableModel::freeze(base, m.freeze_layers)
                                                         : TrainableModel::lora(base, lora_config(m), seed);
  model.gradient_checkpointing = m.gradient_checkpointing;
  return model;
}

TrainingArguments training_arguments(const TrainOptions& o) {
  TrainingArguments a;
  a.output_dir = o.output;
  a.num_epochs = o.epochs;
  a.max_steps = o.max_steps;
  a.batch_size = o.batch_size;
  a.grad_accum = o.grad_accum;
  a.learning_rate = o.lr;
  a.lr_scheduler = o.lr_scheduler;
  if (o.warmup >= 1)
    a.warmup_steps = int64_t(std::llround(o.warmup));
  else
    a.warmup_ratio = o.warmup;
  a.weight_decay = o.weight_decay;
  a.max_grad_norm = o.max_grad_norm;
  a.seed = uint64_t(o.seed);
  a.logging_steps = o.logging_steps;
  a.save_steps = o.save_steps;
  a.eval_steps = o.eval_steps;
  a.save_total_limit = o.save_total_limit;
  return a;
}

std::string method_summary(const MethodOptions& m) {
  if (m.finetuning_type == "full") return "full fine-tuning (every weight trains)";
  if (m.finetuning_type == "freeze") return fmt::format("freeze fine-tuning (the last {} layers train)", m.freeze_layers);
  if (m.method == "adalora")
    return fmt::format("AdaLoRA init_r={} -> target_r={}, alpha={}, dropout={} on {} (tinit {}, tfinal {}, deltaT {}, "
                       "orth_reg_weight {:g})", m.adalora.init_r, m.adalora.target_r, m.alpha, m.dropout,
                       fmt::join(m.target, ","), m.adalora.tinit, m.adalora.tfinal, m.adalora.delta_t,
                       m.adalora.orth_reg_weight);
  std::string s = fmt::format("LoRA r={}, alpha={}, dropout={} on {}", m.rank, m.alpha, m.dropout, fmt::join(m.target, ","));
  if (m.rslora) s += ", rsLoRA";
  if (m.dora) s += ", DoRA";
  if (m.init != "true") s += ", init " + m.init;
  if (!m.modules_to_save.empty()) s += fmt::format(", modules_to_save {}", fmt::join(m.modules_to_save, ","));
  return s;
}

}  // namespace lora::cli
