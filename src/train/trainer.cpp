#include "train/trainer.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "adapters/merge.h"
#include "adapters/peft_io.h"
#include "core/atomic_file.h"
#include "adapters/adapter.h"
#include "core/error.h"
#include "core/hash.h"
#include "formats/model_loader.h"
#include "formats/safetensors.h"
#include "kernels/cross_entropy.h"
#include "train/adalora.h"
#include "train/data_parallel.h"
#include "train/lr_schedule.h"
#include "train/optimizer.h"
#include "train/rank_report.h"

namespace lora {

namespace fs = std::filesystem;

struct Trainer::Optimizer {
  AdamW adamw;
  LrSchedule schedule;
};

namespace {

// Every id and label of a data set, in order.
uint64_t examples_fingerprint(const std::vector<TrainExample>& examples) {
  Fnv1a h;
  for (const TrainExample& e : examples) {
    h.add(int64_t(e.input_ids.size()));
    for (size_t i = 0; i < e.input_ids.size(); ++i) h.add(int64_t(e.input_ids[i])).add(int64_t(e.labels[i]));
  }
  return h.value;
}

// A count or position of a trainer_state.json: a non-negative integer (a float or a huge value would make get<int64_t>
// undefined, a negative one would index before the data).
int64_t state_count(const nlohmann::json& j, const char* key, const std::string& path) {
  const nlohmann::json& v = j.at(key);
  if (!v.is_number_integer() || v.get<int64_t>() < 0)
    fail_format(path, "field '{}' must be a non-negative integer, found {}", key, v.dump());
  return v.get<int64_t>();
}

}  // namespace

Trainer::Trainer(TrainableModel& model, TrainingArguments args, std::vector<TrainExample> train_set,
                 std::vector<TrainExample> eval_set, Communicator* comm)
    : model_(model), args_(std::move(args)), train_set_(std::move(train_set)), eval_set_(std::move(eval_set)) {
  if (!comm) own_comm_ = local_communicator();
  comm_ = comm ? comm : own_comm_.get();
  if (train_set_.empty()) fail("the training set is empty");
  if (args_.batch_size < 1 || args_.grad_accum < 1) fail("batch size and gradient accumulation must be at least 1");
  for (const TrainExample& e : train_set_)
    if (e.input_ids.size() != e.labels.size()) fail("an example has {} ids but {} labels", e.input_ids.size(), e.labels.size());
  data_fingerprint_ = fmt::format("{:016x}", examples_fingerprint(train_set_));
  micro_per_epoch_ = (int64_t(train_set_.size()) + args_.batch_size - 1) / args_.batch_size;
  steps_per_epoch_ = (micro_per_epoch_ + args_.grad_accum - 1) / args_.grad_accum;
  total_steps_ = args_.max_steps > 0 ? args_.max_steps : args_.num_epochs * steps_per_epoch_;
  if (total_steps_ < 1) fail("nothing to train: {} epochs, max_steps {}", args_.num_epochs, args_.max_steps);
  const int64_t warmup = args_.warmup_steps > 0 ? args_.warmup_steps
                                                : int64_t(std::ceil(args_.warmup_ratio * double(total_steps_)));
  LrSchedule schedule{args_.lr_scheduler, args_.learning_rate, warmup, total_steps_};
  schedule.validate();
  optimizer_ = std::make_shared<Optimizer>(
      Optimizer{AdamW(model_.params(), AdamWConfig{0.9f, 0.999f, 1e-8f, args_.weight_decay}), schedule});
  if (AdaLoraOptions* a = model_.adalora_options()) {
    if (a->total_step <= 0) a->total_step = total_steps_;  // PEFT needs it given; the run knows it
    rank_allocator_ = std::make_shared<RankAllocator>(model_);
  }
  grad_allreduce_ = std::make_unique<GradientAllReduce>(model_.params(), *comm_);
}

Trainer::~Trainer() = default;

std::vector<size_t> Trainer::epoch_order(int64_t epoch) const {
  // A fresh, seeded shuffle per epoch: the data position alone (epoch, index) fixes what comes next.
  std::vector<size_t> order(train_set_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(args_.seed * 1000003ULL + uint64_t(epoch));
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

EvalResult Trainer::evaluate(const std::vector<TrainExample>& data) {
  if (comm_->size() == 1) return evaluate_examples(model_, data, args_.batch_size);
  const ExampleRange mine = rank_share({0, data.size()}, comm_->rank(), comm_->size());
  const std::vector<TrainExample> share(data.begin() + ptrdiff_t(mine.begin), data.begin() + ptrdiff_t(mine.end));
  const EvalResult e = evaluate_examples(model_, share, args_.batch_size);
  double sums[2] = {e.loss * double(e.tokens), double(e.tokens)};
  comm_->allreduce_sum(sums, 2, fmt::format("the evaluation at step {}", step_));
  return eval_result(sums[0], int64_t(sums[1]));
}

// Every rank must train the same model on the same data with the same options, and start from the same
// weights: a fresh run takes rank 0's initial weights (DDP does the same), a resumed one checks that every
// rank read the same checkpoint.
void Trainer::check_ranks_agree(bool resumed) {
  if (comm_->size() == 1) return;
  const TrainingArguments& a = args_;
  const std::string options = fmt::format("{} {} {} {} {:.17g} {} {} {:.17g} {:.17g} {:.17g} {} {} {} {}\n{}", a.num_epochs,
                                          a.max_steps, a.batch_size, a.grad_accum, a.learning_rate, a.lr_scheduler,
                                          a.warmup_steps, a.warmup_ratio, a.weight_decay, a.max_grad_norm, a.seed,
                                          a.logging_steps, a.save_steps, a.eval_steps, a.run_config);
  Fnv1a params;
  for (const Param& p : model_.params()) {
    params.add(p.name);
    for (int64_t d : p.value->shape()) params.add(d);
  }
  RunFingerprint fingerprint = {{"options", Fnv1a().add(options).value},
                                {"base model", model_fingerprint(model_.base())},
                                {"training data", examples_fingerprint(train_set_)},
                                {"evaluation data", examples_fingerprint(eval_set_)},
                                {"trainable parameters", params.value}};
  if (resumed) {
    std::vector<const Tensor*> state;
    for (size_t i = 0; i < model_.params().size(); ++i)
      state.insert(state.end(), {model_.params()[i].value, &optimizer_->adamw.exp_avg()[i], &optimizer_->adamw.exp_avg_sq()[i]});
    std::map<std::string, Tensor> scores;
    if (rank_allocator_) scores = rank_allocator_->state();
    for (const auto& [name, t] : scores) state.push_back(&t);
    std::ostringstream rng_state;
    rng_state << model_.rng();
    fingerprint.push_back({"checkpoint", Fnv1a()
                                             .add(step_)
                                             .add(micro_cursor_)
                                             .add(optimizer_->adamw.steps())
                                             .add(rng_state.str())
                                             .add(int64_t(tensor_fingerprint(state)))
                                             .value});
  }
  check_same_run(fingerprint, *comm_);
  if (!resumed) {
    std::vector<Tensor*> weights;
    for (Param& p : model_.params()) weights.push_back(p.value);
    broadcast_tensors(weights, *comm_, "the broadcast of the initial weights");
  }
}

bool Trainer::train(const std::string& resume_from) {
  if (!resume_from.empty()) load_checkpoint(resume_from);  // before anything is written: a bad checkpoint leaves no trace
  check_ranks_agree(!resume_from.empty());
  if (comm_->is_root()) fs::create_directories(args_.output_dir);
  const auto start = std::chrono::steady_clock::now();
  int64_t tokens_seen = 0;
  const int64_t first_step = step_;
  const size_t batch = size_t(args_.batch_size);
  std::vector<size_t> order;
  int64_t order_epoch = -1;

  while (step_ < total_steps_) {
    // This step's global batch: grad_accum micro-batches, one contiguous range of the epoch's order (an
    // epoch's last step may be shorter). This rank trains on its share of it, in micro-batches of at most
    // batch_size; every gradient is scaled by the target count of the whole global batch.
    const int64_t epoch = micro_cursor_ / micro_per_epoch_, first_micro = micro_cursor_ % micro_per_epoch_;
    if (epoch != order_epoch) {
      order = epoch_order(epoch);
      order_epoch = epoch;
    }
    const int64_t n_micro = std::min(args_.grad_accum, micro_per_epoch_ - first_micro);
    micro_cursor_ += n_micro;
    const ExampleRange global{size_t(first_micro) * batch, std::min(order.size(), size_t(first_micro + n_micro) * batch)};
    int64_t n_targets = 0;
    for (size_t i = global.begin; i < global.end; ++i) n_targets += counted_targets(train_set_[order[i]]);
    const ExampleRange mine = rank_share(global, comm_->rank(), comm_->size());

    // The first step of a run builds primitives and buffers: the profile starts after it.
    Profiler* prof = step_ > first_step ? model_.profiler : nullptr;
    if (prof) prof->begin_step();
    model_.zero_grad();
    // Dropout: with several ranks, each draws its masks from its own stream, derived from the shared one
    // (which every rank advances alike, so that checkpoints hold one state).
    std::optional<std::mt19937_64> shared_rng;
    if (comm_->size() > 1) {
      const uint64_t step_seed = model_.rng()();
      shared_rng = model_.rng();
      model_.rng().seed(step_seed ^ (0x9E3779B97F4A7C15ULL * uint64_t(comm_->rank() + 1)));
    }
    double loss_sum = 0;
    int64_t count = 0, step_tokens = 0;
    for (size_t begin = mine.begin; begin < mine.end; begin += batch) {
      const PaddedBatch b = make_padded_batch(train_set_, order, begin, std::min(mine.end, begin + batch));
      const auto r = model_.forward_backward(b.tokens.data(), b.targets.data(), b.B, b.T,
                                             n_targets ? 1.0f / float(n_targets) : 0.0f);
      loss_sum += r.loss_sum;
      count += r.count;
      step_tokens += b.n_tokens;
    }
    bool stop = stop_requested_;
    if (comm_->size() > 1) {  // the sums over the ranks: gradients, loss, tokens, and whether any rank was asked to stop
      model_.rng() = *shared_rng;
      Profiler::Scope timed(prof, Phase::AllReduce);
      const std::string what = fmt::format("the gradient all-reduce of step {}", step_ + 1);
      grad_allreduce_->run(what);
      double sums[4] = {loss_sum, double(count), double(step_tokens), stop ? 1.0 : 0.0};
      comm_->allreduce_sum(sums, 4, what);
      loss_sum = sums[0];
      count = int64_t(sums[1]);
      step_tokens = int64_t(sums[2]);
      stop = sums[3] > 0;
    }
    tokens_seen += step_tokens;
    const double loss = count ? loss_sum / double(count) : 0.0;
    if (!std::isfinite(loss))
      fail("the loss became {} at step {}; stopping. The last checkpoint in {} is intact", loss, step_ + 1,
           args_.output_dir);
    // AdaLoRA's regularizer is part of the step's loss once, whatever the accumulation
    std::optional<Profiler::Scope> timed(std::in_place, prof, Phase::Optimizer);
    const double orth_reg = rank_allocator_ ? add_orthogonal_regularization(model_) : 0.0;
    const double grad_norm = clip_grad_norm(model_.params(), args_.max_grad_norm);
    if (!std::isfinite(grad_norm))
      fail("the gradient norm became {} at step {}; stopping. The last checkpoint in {} is intact", grad_norm,
           step_ + 1, args_.output_dir);
    const double lr = optimizer_->schedule.at(step_);
    optimizer_->adamw.step(model_.params(), float(lr));
    ++step_;
    const int64_t budget = rank_allocator_ ? rank_allocator_->update_and_allocate(step_) : -1;
    timed.reset();
    if (prof) prof->end_step();

    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    StepLog log{step_, total_steps_, double(micro_cursor_) / double(micro_per_epoch_), loss, lr, grad_norm,
                elapsed > 0 ? double(tokens_seen) / elapsed : 0.0, elapsed, step_ - first_step, budget, orth_reg};
    history_.push_back(log);
    if (on_step) on_step(log);
    if (args_.logging_steps > 0 && (step_ % args_.logging_steps == 0 || step_ == total_steps_)) {
      nlohmann::json line{{"step", step_}, {"epoch", log.epoch}, {"loss", loss}, {"learning_rate", lr},
                          {"grad_norm", grad_norm}, {"tokens_per_second", log.tokens_per_second}};
      if (rank_allocator_) {
        line["budget"] = budget;
        line["orth_reg"] = orth_reg;
      }
      write_metrics_line(line.dump());
    }
    if (!eval_set_.empty() && ((args_.eval_steps > 0 && step_ % args_.eval_steps == 0) || step_ == total_steps_)) {
      const EvalResult e = evaluate(eval_set_);
      eval_history_.emplace_back(step_, e);
      if (on_eval) on_eval(step_, e);
      write_metrics_line(nlohmann::json{{"step", step_}, {"eval_loss", e.loss}, {"eval_perplexity", e.perplexity},
                                        {"eval_tokens", e.tokens}}
                             .dump());
    }
    if (args_.save_steps > 0 && step_ % args_.save_steps == 0 && step_ < total_steps_) save_checkpoint();
    if (comm_->size() == 1) stop = stop_requested_;  // one process: a request during this step counts now
    if (stop && step_ < total_steps_) {  // at the last step the run simply completes
      if (last_saved_step_ != step_) save_checkpoint();
      return false;
    }
  }
  save_final();
  return true;
}

void Trainer::write_metrics_line(const std::string& line) {
  if (!comm_->is_root()) return;
  std::ofstream out(args_.output_dir + "/metrics.jsonl", std::ios::app);
  out << line << "\n";
  if (!out) fail("{}/metrics.jsonl: cannot write", args_.output_dir);
}

std::string Trainer::state_json() const {
  std::ostringstream rng_state;
  rng_state << const_cast<TrainableModel&>(model_).rng();
  nlohmann::json log = nlohmann::json::array();
  size_t e = 0;  // evaluations go after the step they followed, as in Hugging Face's log_history
  for (const StepLog& s : history_) {
    log.push_back({{"step", s.step}, {"epoch", s.epoch}, {"loss", s.loss}, {"learning_rate", s.learning_rate},
                   {"grad_norm", s.grad_norm}, {"budget", s.budget}, {"orth_reg", s.orth_reg}});
    for (; e < eval_history_.size() && eval_history_[e].first <= s.step; ++e)
      log.push_back({{"step", eval_history_[e].first}, {"eval_loss", eval_history_[e].second.loss},
                     {"eval_perplexity", eval_history_[e].second.perplexity}, {"eval_tokens", eval_history_[e].second.tokens}});
  }
  const nlohmann::json state = {{"global_step", step_},
                                {"max_steps", total_steps_},
                                {"micro_batch_cursor", micro_cursor_},
                                {"train_batch_size", args_.batch_size},
                                {"gradient_accumulation_steps", args_.grad_accum},
                                {"num_examples", train_set_.size()},
                                {"dataset_fingerprint", data_fingerprint_},
                                {"dropout_rng", rng_state.str()},
                                {"log_history", log}};
  return state.dump(1) + "\n";
}

// A LoRA run saves its adapter (PEFT layout); full and freeze runs save the whole model as a Hugging
// Face folder, which also holds every trained tensor under its parameter name.
void Trainer::save_weights(const std::string& dir) const {
  if (model_.type() == FinetuningType::Lora) {
    save_peft_adapter(model_, dir);
    return;
  }
  save_hf_folder(merged_model(model_), dir);  // trained copies in place of the base's views
}

std::string Trainer::save_checkpoint() {
  const std::string dir = fmt::format("{}/checkpoint-{}", args_.output_dir, step_);
  last_saved_step_ = step_;
  if (!comm_->is_root()) return dir;  // rank 0 holds the same state and writes it
  AtomicDirectory out(dir);
  save_weights(out.tmp_path());
  std::map<std::string, Tensor> opt;
  for (size_t i = 0; i < model_.params().size(); ++i) {
    opt["exp_avg." + model_.params()[i].name] = optimizer_->adamw.exp_avg()[i];
    opt["exp_avg_sq." + model_.params()[i].name] = optimizer_->adamw.exp_avg_sq()[i];
  }
  save_safetensors(out / "optimizer.safetensors", opt, {{"adamw_steps", std::to_string(optimizer_->adamw.steps())}});
  if (rank_allocator_) save_safetensors(out / "adalora_state.safetensors", rank_allocator_->state());
  write_file_atomic(out / "trainer_state.json", state_json());
  for (const auto& [name, text] : args_.extra_files) write_file_atomic(out / name, text);
  out.commit();
  prune_checkpoints();
  if (on_save) on_save(dir);
  return dir;
}

void Trainer::prune_checkpoints() {
  if (args_.save_total_limit <= 0) return;
  std::vector<std::pair<int64_t, fs::path>> found;
  for (const auto& e : fs::directory_iterator(args_.output_dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind("checkpoint-", 0) == 0 && name.find(".tmp-") == std::string::npos) {
      try {
        found.emplace_back(std::stoll(name.substr(11)), e.path());
      } catch (const std::exception&) {
      }
    }
  }
  std::sort(found.begin(), found.end());
  for (size_t i = 0; i + size_t(args_.save_total_limit) < found.size(); ++i) fs::remove_all(found[i].second);
}

void Trainer::load_checkpoint(const std::string& dir) {
  const std::string state_path = dir + "/trainer_state.json";
  std::ifstream in(state_path);
  if (!in) fail_format(state_path, "cannot open (is '{}' a checkpoint folder?)", dir);
  nlohmann::json state;
  try {
    state = nlohmann::json::parse(in);
    const int64_t batch = state_count(state, "train_batch_size", state_path),
                  accum = state_count(state, "gradient_accumulation_steps", state_path);
    if (batch != args_.batch_size || accum != args_.grad_accum)
      fail_format(state_path, "the checkpoint was trained with batch size {} and gradient accumulation {}; this run has {} "
                              "and {}: the data position would not mean the same", batch, accum, args_.batch_size, args_.grad_accum);
    const std::string fingerprint = state.at("dataset_fingerprint").get<std::string>();
    const int64_t examples = state_count(state, "num_examples", state_path);
    if (fingerprint != data_fingerprint_)
      fail_format(state_path, "the checkpoint was trained on other data ({} examples, fingerprint {}; this run has {}, {}): "
                              "check the data, template and sequence-length options", examples, fingerprint,
                  train_set_.size(), data_fingerprint_);
    step_ = state_count(state, "global_step", state_path);
    micro_cursor_ = state_count(state, "micro_batch_cursor", state_path);
    std::istringstream rng_state(state.at("dropout_rng").get<std::string>());
    if (!(rng_state >> model_.rng())) fail_format(state_path, "field 'dropout_rng' is not a generator state");
    history_.clear();
    eval_history_.clear();
    for (const auto& h : state.at("log_history")) {
      if (h.contains("eval_loss"))
        eval_history_.push_back({state_count(h, "step", state_path), EvalResult{h.at("eval_loss").get<double>(),
                                                                         h.at("eval_perplexity").get<double>(),
                                                                         state_count(h, "eval_tokens", state_path)}});
      else
        history_.push_back({state_count(h, "step", state_path), total_steps_, h.at("epoch").get<double>(), h.at("loss").get<double>(),
                            h.at("learning_rate").get<double>(), h.at("grad_norm").get<double>(), 0, 0, 0,
                            h.contains("budget") && h["budget"].is_number_integer() ? h["budget"].get<int64_t>() : -1,
                            h.value("orth_reg", 0.0)});
    }
  } catch (const nlohmann::json::exception& e) {
    fail_format(state_path, "invalid trainer state: {}", e.what());
  }
  if (step_ >= total_steps_)
    fail_format(state_path, "the checkpoint is at step {}, and this run has {} steps in all: nothing left to do (raise "
                            "--max-steps or --epochs to train on)", step_, total_steps_);
  const std::string weights = model_.type() == FinetuningType::Lora ? dir + "/adapter_model.safetensors"
                                                                     : dir + "/model.safetensors";
  const SafetensorsFile w = SafetensorsFile::open(weights);
  const SafetensorsFile opt = SafetensorsFile::open(dir + "/optimizer.safetensors");
  // The weights as saved, under the params' names too where the files fuse them (Phi-3's qkv_proj: the params are
  // the parts'); the optimizer state is saved under the params' own names.
  std::map<std::string, Tensor> saved;
  for (const SafetensorsTensorInfo& info : w.tensors()) saved[info.name] = w.load(info.name);
  saved = with_fused_parts(std::move(saved), model_.base().config);
  for (size_t i = 0; i < model_.params().size(); ++i) {
    Param& p = model_.params()[i];
    auto put = [&](const std::string& path, const std::string& name, const Tensor& stored, Tensor& into) {
      const Tensor t = stored.to(DType::F32);
      if (t.shape() != into.shape())
        fail_format(path, "tensor '{}' has shape {}, expected {}", name, t.shape_str(), into.shape_str());
      std::memcpy(into.data(), t.data(), t.nbytes());
    };
    auto copy = [&](const SafetensorsFile& f, const std::string& name, Tensor& into) {
      if (!f.has(name)) fail_format(f.path(), "tensor '{}' is missing: the checkpoint is not of this run's configuration", name);
      put(f.path(), name, f.load(name), into);
    };
    const auto stored = saved.find(p.name);
    if (stored == saved.end())
      fail_format(w.path(), "tensor '{}' is missing: the checkpoint is not of this run's configuration", p.name);
    put(w.path(), p.name, stored->second, *p.value);
    // A Gemma norm's checkpoint holds w, the model the factor 1 + w (formats/hf_folder.cpp writes w).
    if (model_.base().config.gemma_block && p.name.ends_with("norm.weight"))
      for (int64_t k = 0; k < p.value->numel(); ++k) p.value->f32()[k] += 1.0f;
    copy(opt, "exp_avg." + p.name, optimizer_->adamw.exp_avg()[i]);
    copy(opt, "exp_avg_sq." + p.name, optimizer_->adamw.exp_avg_sq()[i]);
  }
  const auto steps_field = opt.metadata().find("adamw_steps");
  int64_t adamw_steps = -1;
  if (steps_field != opt.metadata().end()) {
    const std::string& v = steps_field->second;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), adamw_steps);
    if (ec != std::errc() || end != v.data() + v.size()) adamw_steps = -1;
  }
  if (adamw_steps < 0)
    fail_format(opt.path(), "metadata 'adamw_steps' must be a non-negative integer (the optimizer's step count)");
  optimizer_->adamw.set_steps(adamw_steps);
  if (rank_allocator_) {
    const SafetensorsFile f = SafetensorsFile::open(dir + "/adalora_state.safetensors");
    std::map<std::string, Tensor> state;
    for (const SafetensorsTensorInfo& t : f.tensors()) state[t.name] = f.load(t.name);
    rank_allocator_->load_state(state, f.path());
  }
  last_saved_step_ = step_;
  if (!comm_->is_root()) return;

  // A run that went on past its last checkpoint logged steps that will now be redone: drop them.
  fs::create_directories(args_.output_dir);
  const std::string metrics = args_.output_dir + "/metrics.jsonl";
  std::ifstream old(metrics);
  std::string kept, line;
  while (std::getline(old, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("step", int64_t(0)) <= step_) kept += line + "\n";
  }
  write_file_atomic(metrics, kept);
}

void Trainer::save_final() {
  if (!comm_->is_root()) return;
  if (rank_allocator_) {  // the adapter is saved sliced to the kept triplets, as PEFT does
    const AdaLoraOptions& a = *model_.adalora_options();
    model_.adalora_options()->rank_pattern = rank_allocator_->rank_pattern();
    plot_rank_allocation_png(rank_allocator_->ranks(), a.init_r, a.target_r, args_.output_dir + "/rank_allocation.png");
  }
  save_weights(args_.output_dir);
  write_file_atomic(args_.output_dir + "/trainer_state.json", state_json());
  for (const auto& [name, text] : args_.extra_files) write_file_atomic(args_.output_dir + "/" + name, text);
}

}  // namespace lora
