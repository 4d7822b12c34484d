#pragma once
// What every harness shares: the fuzzer's bytes as a file (the parsers read files and folders, the way
// users hand them over), and the rule that hostile input may only end in lora::Error.
//
// Files go into a private folder on /dev/shm (tmpfs: no disk I/O per execution), made once per process
// and removed at exit. Any exception other than lora::Error escaping a parser is a finding: it aborts, so
// libFuzzer records the input, as it does for a crash.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/error.h"

namespace lora::fuzz {

struct ScratchDir {
  std::string path;
  ScratchDir() {
    const char* base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    path = std::string(base) + "/lora-fuzz-XXXXXX";
    if (!::mkdtemp(path.data())) std::abort();
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

inline const std::string& scratch_dir() {
  static const ScratchDir dir;
  return dir.path;
}

// Writes `bytes` to scratch_dir()/name (replacing it) and returns the path.
inline std::string write_input(const std::string& name, std::string_view bytes) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  out.close();
  if (!out) std::abort();
  return path;
}

// Splits the input at the first occurrence of `separator` (a marker the dictionaries know): what comes
// before and after. Without it, everything is the first part.
inline std::pair<std::string_view, std::string_view> split_input(std::string_view bytes, std::string_view separator) {
  const size_t at = bytes.find(separator);
  if (at == std::string_view::npos) return {bytes, {}};
  return {bytes.substr(0, at), bytes.substr(at + separator.size())};
}

// Runs `parse`; a lora::Error is the expected answer to bad input, anything else escaping is a bug.
template <typename F>
void expect_clean(F&& parse) {
  try {
    parse();
  } catch (const lora::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: an exception other than lora::Error escaped: %s\n", e.what());
    std::abort();
  }
}

}  // namespace lora::fuzz
