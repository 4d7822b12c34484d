#pragma once
// Generated text cut at the first stop string, released piece by piece as it is generated: text that
// could still be the start of a stop string is held back until the next piece decides it. `lora chat`
// prints what it releases; `lora serve` streams it.
#include <string>
#include <vector>

namespace lora {

class StopText {
 public:
  explicit StopText(std::vector<std::string> stop);

  // Adds generated text and returns what can now be shown. Once a stop string has appeared, stopped()
  // is true, the text ends before it and nothing more is released.
  std::string add(const std::string& piece);
  // Releases what was held back (generation ended without a stop string).
  std::string finish();

  bool stopped() const { return stopped_; }
  const std::string& text() const { return text_; }  // everything kept so far, released or not

 private:
  std::vector<std::string> stop_;
  std::string text_;
  size_t released_ = 0;
  bool stopped_ = false;
};

}  // namespace lora
