#include "adapters/adapter_io.h"

#include <cstring>
#include <filesystem>

#include "adapters/gguf_adapter.h"
#include "adapters/peft_io.h"
#include "core/error.h"
#include "core/mapped_file.h"

namespace lora {

namespace fs = std::filesystem;

std::string detect_adapter_format(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return "peft";
  if (!fs::exists(path, ec)) fail_format(path, "no such adapter file or folder");
  const auto file = MappedFile::open(path);
  if (file->size() >= 4 && std::memcmp(file->data(), "GGUF", 4) == 0) return "gguf";
  if (fs::path(path).filename() == "adapter_config.json" || fs::path(path).extension() == ".safetensors")
    fail_format(path, "pass the adapter's folder, not a file inside it");
  fail_format(path, "not a PEFT adapter folder or a GGUF adapter file");
}

Adapter read_adapter(const std::string& path, const ModelConfig* base) {
  return detect_adapter_format(path) == "gguf" ? read_gguf_adapter(path, base) : read_peft_adapter(path);
}

Adapter load_adapter(const std::string& path, const Model& base) {
  Adapter a = read_adapter(path, &base.config);
  check_adapter_fits(a, base);
  return a;
}

void write_adapter(const Adapter& adapter, const std::string& path, const Model* base, DType dtype) {
  if (fs::path(path).extension() == ".gguf") {
    if (!base) fail("{}: writing a GGUF adapter needs the base model (-m): its architecture and head counts", path);
    write_gguf_adapter(adapter, *base, path, dtype);
  } else {
    write_peft_adapter(adapter, path);
  }
}

}  // namespace lora
