#pragma once
// What a request's "model" field can name: the base model, and each adapter served on it (an AdapterSet
// of its own holding that one adapter, active at its scale). Adapters are loaded and unloaded while
// requests run: a request holds its ServedModel by shared_ptr, so an unloaded adapter stays alive until
// the requests that use it end.
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "adapters/adapter_set.h"

namespace lora::serve {

struct ServedModel {
  std::string name;
  std::string parent;                    // the base model's name; "" for the base itself
  std::string path;                      // the file or folder it came from
  float scale = 1.0f;
  std::string chat_template;             // a name chat_template() knows
  int64_t created = 0;                   // Unix time it was loaded
  std::unique_ptr<AdapterSet> adapters;  // null for the base

  const ForwardAdapters* forward_adapters() const { return adapters.get(); }
};

class ServedModels {
 public:
  // The chat template to use for an adapter at this path (its training_args.yaml, else the base's).
  using TemplateChooser = std::function<std::string(const std::string& adapter_path)>;

  ServedModels(const Model& base, std::string base_name, std::string base_path, std::string base_template,
               TemplateChooser choose_template);

  // Null when no model has that name.
  std::shared_ptr<const ServedModel> find(const std::string& name) const;
  std::vector<std::shared_ptr<const ServedModel>> list() const;  // the base first, then adapters in load order
  size_t adapter_count() const;
  const std::string& base_name() const { return base_name_; }

  // Reads the adapter and checks it against the base (ApiError 400 naming what does not fit; 400 when the
  // name is taken), without holding up requests that are running.
  void load(const std::string& name, const std::string& path, float scale = 1.0f);
  // ApiError 404 for an unknown name, 400 for the base model.
  void unload(const std::string& name);

 private:
  const Model& base_;
  std::string base_name_;
  TemplateChooser choose_template_;
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<const ServedModel>> models_;
};

}  // namespace lora::serve
