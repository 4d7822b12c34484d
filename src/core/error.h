#pragma once
// Errors carry their context (file, tensor, line, expected vs found) in the message. The CLI prints
// what() as one line and exits non-zero; nothing in the library asserts on user input.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace lora {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A file that could not be read or does not follow its format. The message starts with the path.
class FormatError : public Error {
 public:
  FormatError(const std::string& path, const std::string& problem)
      : Error(path + ": " + problem), path_(path) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void fail_format(const std::string& path, fmt::format_string<Args...> f, Args&&... args) {
  throw FormatError(path, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace lora
