// lora classify train | eval | predict: LoRA (or head-only, or full) fine-tuning of a VGG-style image classifier
// (src/vision), PEFT adapter folders out.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "vision/classifier_adapter.h"
#include "vision/classifier_pass.h"
#include "vision/classifier_trainer.h"
#include "vision/image_dataset.h"
#include "vision/image_io.h"
#include "vision/softmax_cross_entropy.h"
#include "vision/vgg_model.h"

namespace lora::cli {
namespace {

using namespace lora::vision;

struct DataOptions {
  std::string path, split;
  int64_t max_per_class = -1, skip_per_class = 0;
  std::vector<std::string> class_max;  // "C=N"

  DatasetSelection selection() const {
    DatasetSelection s{split, max_per_class, {}, skip_per_class};
    for (const std::string& kv : class_max) {
      const auto eq = kv.find('=');
      if (eq == std::string::npos) fail("--class-max \"{}\": expected CLASS=COUNT, e.g. 0=5", kv);
      try {
        s.class_max[std::stoi(kv.substr(0, eq))] = std::stoll(kv.substr(eq + 1));
      } catch (const std::exception&) {
        fail("--class-max \"{}\": CLASS and COUNT must be integers", kv);
      }
    }
    return s;
  }
};

void add_data_options(CLI::App* c, DataOptions& d, const std::string& default_split) {
  d.split = default_split;
  c->add_option("-d,--data", d.path, "a folder: class sub-folders of PNG/JPEG images, or IDX files")->required();
  c->add_option("--split", d.split, "IDX files: <split>-images-idx3-ubyte[.gz]")->capture_default_str();
  c->add_option("--max-per-class", d.max_per_class, "use the first N images of each class");
  c->add_option("--skip-per-class", d.skip_per_class, "skip the first N images of each class");
  c->add_option("--class-max", d.class_max, "CLASS=N: at most N images of that class (0 leaves it out)");
}

struct TrainOptions {
  std::string model, output, method = "lora";
  DataOptions data;
  int64_t rank = 8;
  float alpha = 16;
  std::vector<std::string> targets, modules_to_save;
  bool from_scratch = false;
  ClassifierTrainOptions train;
  int64_t logging_steps = 50;
};

// Default targets: every Conv2d and Linear but the head; default modules_to_save: the head.
std::vector<std::string> module_names(const VggModel& m, bool head) {
  std::vector<std::string> names;
  const VggLayer* last = nullptr;
  for (const VggLayer& l : m.layers)
    if (l.spec.kind == LayerKind::Linear) last = &l;
  for (const VggLayer& l : m.layers)
    if ((l.spec.kind == LayerKind::Conv2d || l.spec.kind == LayerKind::Linear) && ((&l == last) == head))
      names.push_back(l.spec.name);
  return names;
}

std::vector<std::string> split_commas(const std::vector<std::string>& in) {
  std::vector<std::string> out;
  for (const std::string& s : in) {
    size_t b = 0;
    while (b <= s.size()) {
      const size_t e = std::min(s.find(',', b), s.size());
      if (e > b) out.push_back(s.substr(b, e - b));
      b = e + 1;
    }
  }
  return out;
}

VggModel load_or_init(const std::string& dir, bool from_scratch, uint64_t seed) {
  if (from_scratch) {
    if (std::filesystem::exists(dir + "/model.safetensors"))
      fail("--from-scratch: {} already has weights (model.safetensors)", dir);
    return random_vgg_model(read_vgg_config(dir + "/config.json"), seed);
  }
  return load_vgg_model(dir);
}

void run_train(const TrainOptions& o) {
  const VggModel model = load_or_init(o.model, o.from_scratch, o.train.seed);
  const ImageDataset data = load_image_dataset(o.data.path, model.config, o.data.selection());
  ClassifierAdapter adapter;
  if (o.method == "full") {
    adapter = make_full_finetune(model);
  } else {
    ClassifierLoraConfig c{.r = o.rank, .alpha = o.alpha, .base_model_name_or_path = o.model};
    c.modules_to_save = o.modules_to_save.empty() ? module_names(model, true) : split_commas(o.modules_to_save);
    if (c.modules_to_save == std::vector<std::string>{"none"}) c.modules_to_save.clear();
    if (o.method == "lora") c.target_modules = o.targets.empty() ? module_names(model, false) : split_commas(o.targets);
    else if (o.method != "head") fail("--method must be lora, head or full, not \"{}\"", o.method);
    adapter = make_classifier_adapter(model, c, o.train.seed);
  }
  const int64_t trainable = adapter.trainable_count();
  fmt::print("{} images, {} classes; {} fine-tuning: {} trainable parameters of {} ({:.2f}%)\n", data.size(),
             model.config.num_classes, o.method, trainable, model.parameter_count(),
             100.0 * double(trainable) / double(model.parameter_count()));
  const ClassifierTrainReport r = train_classifier(model, adapter, data, o.train, [&](const TrainStepLog& s) {
    if (o.logging_steps > 0 && s.step % o.logging_steps == 0) fmt::print("step {} epoch {} loss {:.4f}\n", s.step, s.epoch, s.loss);
  });
  fmt::print("{} steps, {:.1f} images/s, last loss {:.4f}\n", r.steps, double(r.images) / std::max(r.seconds, 1e-9), r.last_loss);
  if (o.method == "full") {
    save_vgg_model(merge_classifier_adapter(model, adapter), o.output);
    fmt::print("model written to {}\n", o.output);
  } else {
    save_classifier_adapter(adapter, model, o.output);
    fmt::print("adapter written to {}\n", o.output);
  }
}

struct EvalOptions {
  std::string model, adapter, confusion_png;
  DataOptions data;
  bool json = false;
};

void run_eval(const EvalOptions& o) {
  const VggModel model = load_vgg_model(o.model);
  ClassifierAdapter adapter;
  if (!o.adapter.empty()) adapter = load_classifier_adapter(model, o.adapter);
  const ImageDataset data = load_image_dataset(o.data.path, model.config, o.data.selection());
  const ClassifierEval e = evaluate_classifier(model, o.adapter.empty() ? nullptr : &adapter, data);
  if (!o.confusion_png.empty()) write_confusion_png(e, o.confusion_png);
  if (o.json) {
    nlohmann::json per = nlohmann::json::object();
    for (int64_t c = 0; c < model.config.num_classes; ++c)
      if (e.class_images(c)) per[model.config.class_name(c)] = e.class_accuracy(c);
    fmt::print("{}\n", nlohmann::json{{"images", e.images}, {"accuracy", e.accuracy()}, {"per_class_accuracy", per},
                                      {"confusion", e.confusion}}.dump());
    return;
  }
  fmt::print("accuracy {:.4f} ({} of {} images)\n", e.accuracy(), e.correct, e.images);
  for (int64_t c = 0; c < model.config.num_classes; ++c)
    if (e.class_images(c))
      fmt::print("  {:>20}  {:.4f}  ({} images)\n", model.config.class_name(c), e.class_accuracy(c), e.class_images(c));
}

struct PredictOptions {
  std::string model, adapter;
  std::vector<std::string> images;
  int64_t top_k = 5;
  bool json = false;
};

void run_predict(const PredictOptions& o) {
  const VggModel model = load_vgg_model(o.model);
  ClassifierAdapter adapter;
  if (!o.adapter.empty()) adapter = load_classifier_adapter(model, o.adapter);
  const int64_t classes = model.config.num_classes, k = std::min(o.top_k, classes);
  for (const std::string& path : o.images) {
    Tensor x = preprocess_image(read_image(path), model.config.preprocess, model.config.in_channels, path);
    x = x.reshape({1, x.dim(0), x.dim(1), x.dim(2)});
    const Tensor logits = classifier_forward(model, o.adapter.empty() ? nullptr : &adapter, x, false, nullptr, nullptr);
    const std::vector<double> p = softmax_row(logits.f32(), classes);
    std::vector<int64_t> order(static_cast<size_t>(classes));
    for (int64_t c = 0; c < classes; ++c) order[size_t(c)] = c;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[size_t(a)] > p[size_t(b)]; });
    if (o.json) {
      nlohmann::json top = nlohmann::json::array();
      for (int64_t i = 0; i < k; ++i)
        top.push_back({{"class", model.config.class_name(order[size_t(i)])}, {"index", order[size_t(i)]},
                       {"probability", p[size_t(order[size_t(i)])]}});
      fmt::print("{}\n", nlohmann::json{{"image", path}, {"top", top},
                                        {"logits", std::vector<float>(logits.f32(), logits.f32() + classes)}}.dump());
      continue;
    }
    fmt::print("{}\n", path);
    for (int64_t i = 0; i < k; ++i)
      fmt::print("  {:>20}  {:.4f}\n", model.config.class_name(order[size_t(i)]), p[size_t(order[size_t(i)])]);
  }
}

}  // namespace

void register_classify(CLI::App& app) {
  auto* cmd = app.add_subcommand("classify", "fine-tune and run a VGG-style image classifier (LoRA on Conv2d/Linear)");
  cmd->require_subcommand(1);

  static TrainOptions t;
  auto* train = cmd->add_subcommand("train", "train a LoRA (or head-only, or full) fine-tune; writes a PEFT adapter");
  train->add_option("-m,--model", t.model, "model folder: config.json + model.safetensors (torchvision names)")->required();
  add_data_options(train, t.data, "train");
  train->add_option("-o,--output", t.output, "output folder (an adapter; a model folder with --method full)")->required();
  train->add_option("--method", t.method, "lora, head (modules_to_save only) or full")->capture_default_str();
  train->add_option("--rank,-r", t.rank, "LoRA rank")->capture_default_str();
  train->add_option("--alpha", t.alpha, "LoRA alpha (scaling alpha / r)")->capture_default_str();
  train->add_option("--target", t.targets, "modules to adapt, torchvision names (default: every Conv2d and Linear but the head)");
  train->add_option("--modules-to-save", t.modules_to_save, "modules trained whole (default: the head; \"none\")");
  train->add_option("--lr", t.train.lr, "AdamW learning rate")->capture_default_str();
  train->add_option("--weight-decay", t.train.weight_decay)->capture_default_str();
  train->add_option("--epochs", t.train.epochs)->capture_default_str();
  train->add_option("--max-steps", t.train.max_steps, "stop after N steps");
  train->add_option("--batch-size", t.train.batch_size)->capture_default_str();
  train->add_option("--seed", t.train.seed)->capture_default_str();
  train->add_option("--logging-steps", t.logging_steps)->capture_default_str();
  train->add_flag("--from-scratch", t.from_scratch, "the model folder has only config.json: start from random weights");
  train->callback([] { run_train(t); });

  static EvalOptions e;
  auto* eval = cmd->add_subcommand("eval", "accuracy, per-class accuracy and confusion matrix on a labelled set");
  eval->add_option("-m,--model", e.model)->required();
  eval->add_option("--adapter", e.adapter, "a PEFT adapter folder written by classify train");
  add_data_options(eval, e.data, "t10k");
  eval->add_option("--confusion-png", e.confusion_png, "write the confusion matrix as a PNG");
  eval->add_flag("--json", e.json);
  eval->callback([] { run_eval(e); });

  static PredictOptions p;
  auto* predict = cmd->add_subcommand("predict", "top-k classes of PNG/JPEG images");
  predict->add_option("-m,--model", p.model)->required();
  predict->add_option("--adapter", p.adapter);
  predict->add_option("images", p.images)->required();
  predict->add_option("--top-k", p.top_k)->capture_default_str();
  predict->add_flag("--json", p.json, "one JSON line per image, with the logits");
  predict->callback([] { run_predict(p); });
}

}  // namespace lora::cli
