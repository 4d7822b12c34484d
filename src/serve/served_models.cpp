#include "serve/served_models.h"

#include <algorithm>
#include <ctime>

#include "core/error.h"
#include "serve/api_error.h"

namespace lora::serve {

ServedModels::ServedModels(const Model& base, std::string base_name, std::string base_path, std::string base_template,
                           TemplateChooser choose_template)
    : base_(base), base_name_(std::move(base_name)), choose_template_(std::move(choose_template)) {
  auto m = std::make_shared<ServedModel>();
  m->name = base_name_;
  m->path = std::move(base_path);
  m->chat_template = std::move(base_template);
  m->created = int64_t(std::time(nullptr));
  models_.push_back(std::move(m));
}

std::shared_ptr<const ServedModel> ServedModels::find(const std::string& name) const {
  std::lock_guard lock(mutex_);
  for (const auto& m : models_)
    if (m->name == name) return m;
  return nullptr;
}

std::vector<std::shared_ptr<const ServedModel>> ServedModels::list() const {
  std::lock_guard lock(mutex_);
  return models_;
}

size_t ServedModels::adapter_count() const {
  std::lock_guard lock(mutex_);
  return models_.size() - 1;
}

void ServedModels::load(const std::string& name, const std::string& path, float scale) {
  if (find(name)) throw ApiError(400, "a model named '" + name + "' is already served", "lora_name");
  auto m = std::make_shared<ServedModel>();
  m->name = name;
  m->parent = base_name_;
  m->path = path;
  m->scale = scale;
  m->created = int64_t(std::time(nullptr));
  try {
    m->adapters = std::make_unique<AdapterSet>(base_);
    m->adapters->activate(m->adapters->load(path, name), scale);
    m->chat_template = choose_template_(path);
  } catch (const Error& e) {
    throw ApiError(400, "cannot load adapter '" + name + "' from " + path + ": " + e.what(), "lora_path");
  }
  std::lock_guard lock(mutex_);
  for (const auto& other : models_)  // loaded meanwhile by another request
    if (other->name == name) throw ApiError(400, "a model named '" + name + "' is already served", "lora_name");
  models_.push_back(std::move(m));
}

void ServedModels::unload(const std::string& name) {
  std::lock_guard lock(mutex_);
  if (name == base_name_) throw ApiError(400, "'" + name + "' is the base model, not an adapter", "lora_name");
  const auto it = std::find_if(models_.begin(), models_.end(), [&](const auto& m) { return m->name == name; });
  if (it == models_.end()) throw ApiError(404, "no adapter named '" + name + "' is loaded", "lora_name", "model_not_found");
  models_.erase(it);
}

}  // namespace lora::serve
