// lora train: fine-tune a model on a dataset (LoRA adapter, or full / freeze fine-tuning), with a
// progress bar, checkpoints, exact resume, Ctrl-C checkpointing and a loss plot at the end.
// Under mpirun, data-parallel over the ranks (train/data_parallel.h): rank 0 alone checks and writes the
// output folder and prints; an error on any rank stops every rank.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/config_file.h"
#include "cli/progress.h"
#include "cli/template_choice.h"
#include "cli/train_options.h"
#include "core/communicator.h"
#include "core/context.h"
#include "core/error.h"
#include "core/profiler.h"
#include "data/chat_template.h"
#include "data/dataset.h"
#include "tokenizer/tokenizer.h"
#include "train/adalora.h"
#include "train/data_parallel.h"
#include "train/loss_plot.h"
#include "train/rank_report.h"
#include "train/run_folder.h"
#include "train/trainer.h"

namespace lora::cli {

namespace fs = std::filesystem;

namespace {

// Ctrl-C (and SIGTERM) asks the trainer to finish its step and checkpoint; a second one kills.
// Under mpirun every rank gets the signal (mpirun passes it on); rank 0 alone says so.
std::atomic<Trainer*> g_trainer{nullptr};
std::atomic<bool> g_quiet{false};

extern "C" void on_interrupt(int) {
  static const char msg[] = "\ninterrupted: finishing this step and saving a checkpoint (press Ctrl-C again to quit at once)\n";
  if (!g_quiet.load()) {
    ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
  }
  if (Trainer* t = g_trainer.load()) t->stop();
}

class InterruptGuard {
 public:
  InterruptGuard(Trainer& t, bool quiet) {
    g_trainer = &t;
    g_quiet = quiet;
    struct sigaction sa{};
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;  // the second signal takes the default action
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~InterruptGuard() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    g_trainer = nullptr;
  }

 private:
  struct sigaction old_int_{}, old_term_{};
};

bool is_checkpoint_name(const std::string& name) { return name.rfind("checkpoint-", 0) == 0; }

// Files a previous run leaves in its output folder.
const std::vector<std::string>& run_files() {
  static const std::vector<std::string> f = {"adapter_config.json", "adapter_model.safetensors", "trainer_state.json",
                                             "metrics.jsonl", "training_loss.png", "training_args.yaml"};
  return f;
}

bool holds_a_run(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (is_checkpoint_name(name) || std::find(run_files().begin(), run_files().end(), name) != run_files().end()) return true;
  }
  return false;
}

// Fails unless `dir` is a writable folder or can be created as one; creates nothing.
void check_output_dir(const std::string& dir) {
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec);
  if (fs::exists(p, ec) && !fs::is_directory(p, ec)) fail("{}: the output folder exists and is not a folder", dir);
  fs::path probe_in = p;
  while (!fs::exists(probe_in, ec)) probe_in = probe_in.parent_path();
  if (!fs::is_directory(probe_in, ec))
    fail("{}: cannot create the output folder: {} is not a folder", dir, probe_in.string());
  // Writing is the only reliable test (root passes every permission check, a read-only mount does not).
  std::string probe = (probe_in / ".lora-write-test-XXXXXX").string();
  if (!::mkdtemp(probe.data())) fail("{}: cannot write the output folder: {}: {}", dir, probe_in.string(), std::strerror(errno));
  fs::remove(probe, ec);
}

void clear_previous_run(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (is_checkpoint_name(name) || std::find(run_files().begin(), run_files().end(), name) != run_files().end())
      fs::remove_all(e.path());
  }
}

std::string absolute(const std::string& p) {
  std::error_code ec;
  const fs::path a = fs::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

std::vector<std::string> absolute(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const std::string& p : paths) out.push_back(absolute(p));
  return out;
}

std::string human_count(int64_t n) {
  if (n >= 1'000'000'000) return fmt::format("{:.2f}B", double(n) / 1e9);
  if (n >= 1'000'000) return fmt::format("{:.2f}M", double(n) / 1e6);
  if (n >= 1'000) return fmt::format("{:.1f}K", double(n) / 1e3);
  return std::to_string(n);
}

// For N ranks: how each global batch is shared among them.
std::string data_parallel_summary(const Communicator& world, int64_t batch, int64_t accum) {
  if (world.size() == 1) return "";
  const size_t global = size_t(batch * accum);
  std::string split;
  for (int r = 0; r < world.size(); ++r)
    split += (r ? " + " : "") + std::to_string(rank_share({0, global}, r, world.size()).size());
  return fmt::format("data parallel: {} ranks x {} thread{}; each global batch of {} examples ({} x {} accumulated) is "
                     "shared {} among the ranks, each running its share in micro-batches of at most {}",
                     world.size(), thread_count(), thread_count() == 1 ? "" : "s", global, batch, accum, split, batch);
}

void run_train(CLI::App* cmd, TrainOptions& o, Communicator& world) {
  const bool root = world.is_root();
  // Only rank 0 speaks; the others print errors alone.
  auto say = [&](fmt::string_view format, const auto&... args) {
    if (root) fmt::vprint(stderr, format, fmt::make_format_args(args...));
  };
  if (!o.config.empty()) apply_yaml_config(cmd, o.config);
  // Rank 0 holds the output folder for the whole run: a second `lora train` into it fails at once.
  OutputLock lock;
  auto hold_output = [&](const std::string& dir) {
    lock.acquire(dir);
    if (lock.stale_pid() != 0)
      say("note: {}: process {} ended without releasing the output folder; its lock is taken over\n", dir, lock.stale_pid());
    const std::vector<std::string> removed = remove_interrupted_writes(dir);
    if (!removed.empty())
      say("note: {}: removed what an interrupted run was writing: {}\n", dir, fmt::join(removed, ", "));
  };
  if (!o.resume.empty()) {
    std::error_code ec;
    // --resume OUTDIR (a run folder, which holds no optimizer state of its own): its newest complete checkpoint
    if (fs::is_directory(o.resume, ec) && !fs::exists(fs::path(o.resume) / "optimizer.safetensors", ec)) {
      if (root) hold_output(o.resume);
      const std::string newest = newest_checkpoint(o.resume);
      if (newest.empty())
        fail("{}: no checkpoint to resume from (neither a checkpoint folder nor a run folder holding a complete "
             "checkpoint-STEP)", o.resume);
      if (o.output.empty()) o.output = o.resume;
      o.resume = newest;
    }
    if (!fs::is_regular_file(o.resume + "/trainer_state.json", ec))
      fail_format(o.resume + "/trainer_state.json", "cannot open (is '{}' a checkpoint folder?)", o.resume);
    const std::string recorded = o.resume + "/training_args.yaml";
    if (fs::is_regular_file(recorded, ec)) apply_yaml_config(cmd, recorded);
    if (o.output.empty()) o.output = fs::path(absolute(o.resume)).parent_path().string();
  }
  validate_train_options(o);
  world.set_timeout(o.mpi_timeout);  // as a config file or the checkpoint's training_args.yaml may have set it
  std::error_code ec;
  if (root) check_output_dir(o.output);
  if (root && lock.held() && !fs::equivalent(o.output, fs::path(o.resume).parent_path(), ec)) lock.release();
  if (root && !lock.held() && fs::is_directory(o.output, ec)) hold_output(o.output);
  if (fs::equivalent(o.output, o.model.model, ec))
    fail("{}: the output folder is the model's folder; write the run somewhere else", o.output);
  if (root && o.resume.empty() && holds_a_run(o.output) && !o.overwrite_output_dir)
    fail("{}: the output folder holds a previous run; continue it with --resume {} (its newest checkpoint), or start "
         "over with --overwrite-output-dir", o.output, o.output);

  Model base = load_base_model(o);
  const Tokenizer& tok = *base.tokenizer;
  const TemplateChoice tmpl = choose_template(o.data.template_name, tok);
  const int64_t context = base.config.max_position_embeddings;
  if (o.data.max_seq_len > context && cmd->get_option("--max-seq-len")->count() > 0)
    say("note: --max-seq-len {} exceeds the model's context; using {}\n", o.data.max_seq_len, context);
  say("model: {} ({} layers, hidden {}, vocab {}, {} parameters)\n", o.model.model, base.config.num_hidden_layers,
      base.config.hidden_size, base.config.vocab_size, human_count(base.parameter_count()));
  say("chat template: {} ({})\n", tmpl.name, tmpl.reason);

  Dataset data = build_dataset(o.data.dataset_options(context, uint64_t(o.seed)), tok, chat_template(tmpl.name));
  for (const std::string& line : data.report) say("data: {}\n", line);

  // A trained full model is saved with its template, so that `lora chat -m OUTDIR` picks it up.
  if (o.method.finetuning_type != "lora" && detect_chat_template(tok.chat_template()) != tmpl.name)
    base.tokenizer->set_chat_template(chat_template(tmpl.name).jinja);

  TrainableModel model = build_trainable_model(o.method, base, uint64_t(o.seed));
  TrainingArguments args = training_arguments(o);
  args.output_dir = o.output;
  args.extra_files["training_args.yaml"] = options_to_yaml(
      cmd, {"config", "resume", "overwrite-output-dir", "profile", "help"},
      {{"template", {tmpl.name}}, {"model", {absolute(o.model.model)}}, {"data", absolute(o.data.data)},
       {"val_data", absolute(o.data.val_data)}, {"output", {absolute(o.output)}},
       {"tokenizer", o.model.tokenizer.empty() ? std::vector<std::string>{} : std::vector<std::string>{absolute(o.model.tokenizer)}}});
  // What every rank must share; the paths may differ between machines (their contents are checked).
  args.run_config = options_to_yaml(cmd, {"config", "resume", "overwrite-output-dir", "profile", "help", "threads", "model",
                                          "data", "val-data", "output", "tokenizer", "mpi-timeout"},
                                    {{"template", {tmpl.name}}});
  Trainer trainer(model, args, std::move(data.train), std::move(data.eval), &world);
  Profiler profiler(thread_count());
  if (o.profile) model.profiler = &profiler;

  say("method: {}; {}\n", method_summary(o.method), model.trainable_report());
  say("schedule: {} steps ({} per epoch), batch {} x {} accumulated, lr {:g} {}, {}\n", trainer.total_steps(),
      trainer.steps_per_epoch(), o.batch_size, o.grad_accum, o.lr, o.lr_scheduler,
      o.warmup >= 1  ? fmt::format("{} warmup steps", int64_t(o.warmup))
      : o.warmup > 0 ? fmt::format("warmup over {:g} of the steps", o.warmup)
                     : std::string("no warmup"));
  if (world.size() > 1) say("{}\n", data_parallel_summary(world, o.batch_size, o.grad_accum));
  if (!o.resume.empty()) say("resuming from {}\n", o.resume);
  if (root && !lock.held()) {  // a new folder: created now that nothing can fail before training starts
    fs::create_directories(o.output);
    hold_output(o.output);
  }
  if (root && o.overwrite_output_dir && o.resume.empty()) clear_previous_run(o.output);

  std::optional<TrainProgress> progress;
  if (root) {
    progress.emplace(trainer.total_steps(), o.logging_steps, TrainProgress::stderr_is_terminal());
    trainer.on_step = [&](const StepLog& s) { progress->step(s); };
    trainer.on_eval = [&](int64_t step, const EvalResult& e) { progress->eval(step, e); };
    trainer.on_save = [&](const std::string& dir) { progress->message("checkpoint: " + dir); };
  }
  bool completed = false;
  {
    InterruptGuard guard(trainer, !root);
    completed = trainer.train(o.resume);
  }
  if (!root) {
    if (!completed) throw ExitStatus{130};
    return;
  }
  progress->finish();
  if (o.profile) fmt::print(stderr, "\n{}\n", profiler.table());

  const std::string plot = o.output + "/training_loss.png";
  if (o.plot_loss && !trainer.history().empty()) {
    LossCurve curve;
    for (const StepLog& s : trainer.history()) curve.train.emplace_back(double(s.step), s.loss);
    for (const auto& [step, e] : trainer.eval_history()) curve.eval.emplace_back(double(step), e.loss);
    curve.title = fmt::format("training loss ({})", fs::path(absolute(o.output)).filename().string());
    plot_loss_png(curve, plot);
  }

  const StepLog& last = trainer.history().back();
  if (!completed) {
    const std::string ckpt = fmt::format("{}/checkpoint-{}", o.output, last.step);
    fmt::print(stderr, "stopped at step {} of {}; checkpoint saved: {}\ncontinue with: lora train --resume {}\n", last.step,
               last.total_steps, ckpt, ckpt);
    throw ExitStatus{130};
  }
  fmt::print("trained {} steps in {}: loss {:.4f}", last.step, format_duration(last.elapsed_seconds), last.loss);
  if (!trainer.eval_history().empty()) {
    const EvalResult& e = trainer.eval_history().back().second;
    fmt::print(", eval loss {:.4f} (perplexity {:.3f})", e.loss, e.perplexity);
  }
  fmt::print("\n");
  if (o.method.finetuning_type == "lora")
    fmt::print("adapter:   {}/adapter_model.safetensors, {}/adapter_config.json\n", o.output, o.output);
  else
    fmt::print("model:     {}/model.safetensors (a complete Hugging Face folder)\n", o.output);
  if (o.plot_loss) fmt::print("loss plot: {}\n", plot);
  if (const RankAllocator* ranks = trainer.rank_allocator()) {
    fmt::print("AdaLoRA ranks (budget {} of {} triplets; picture: {}/rank_allocation.png):\n{}", ranks->target_budget(),
               ranks->initial_budget(), o.output, format_rank_table(ranks->ranks()));
  }
  fmt::print("metrics:   {}/metrics.jsonl\n", o.output);
  if (o.method.finetuning_type == "lora")
    fmt::print("chat:      lora chat -m {} --adapter {}\n", o.model.model, o.output);
  else
    fmt::print("chat:      lora chat -m {}\n", o.output);
}

}  // namespace

void register_train(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train",
      "Fine-tune a model on a dataset: a LoRA adapter (PEFT format) or a fully trained model in OUTDIR, with "
      "checkpoints, metrics.jsonl and training_loss.png. Ctrl-C saves a checkpoint; --resume continues from it");
  cmd->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a later flag overrides an earlier one
  auto o = std::make_shared<TrainOptions>();
  add_train_options(cmd, *o);
  cmd->callback([cmd, o] {
    const std::unique_ptr<Communicator> world = world_communicator({.timeout_seconds = o->mpi_timeout});
    if (world->size() == 1) return run_train(cmd, *o, *world);
    try {
      run_train(cmd, *o, *world);
    } catch (const ExitStatus&) {
      throw;  // every rank stopped at the same step (the stop request is shared)
    } catch (const std::exception& e) {
      // This rank alone may have failed, and the others would wait for it: end them all.
      fmt::print(stderr, "error: rank {} of {}: {}\n", world->rank(), world->size(), e.what());
      world->abort(1);
    }
  });
}

}  // namespace lora::cli
