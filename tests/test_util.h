#pragma once
// Shared helpers for the tests: asset paths, temporary folders, running the CLI and the Python oracle.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace lora::test {

inline std::string asset(const std::string& rel) { return std::string(LORA_ASSETS_DIR) + "/" + rel; }
inline std::string stories_bin() { return asset("models/stories260K/stories260K.bin"); }
inline std::string stories_gguf() { return asset("models/stories260K/stories260K.gguf"); }
inline std::string stories_tokenizer() { return asset("models/stories260K/tok512.bin"); }

// A fresh folder under the system temp dir, removed when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lora-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};

// Runs a shell command line, capturing stdout and stderr separately.
inline RunResult run(const std::string& command) {
  TempDir tmp;
  const std::string out = tmp / "stdout", err = tmp / "stderr";
  const int status = std::system((command + " >" + out + " 2>" + err + " </dev/null").c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(out);
  r.err = read_text(err);
  return r;
}

inline RunResult run_cli(const std::string& args) { return run(std::string(LORA_CLI_PATH) + " " + args); }

// Debian's python3 (with python3-torch), not whatever python3 comes first on PATH.
inline std::string python() { return std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3"; }
inline RunResult run_reference(const std::string& args) {
  return run(python() + " " + LORA_PYTHON_DIR + "/llama_reference.py " + args);
}

}  // namespace lora::test
