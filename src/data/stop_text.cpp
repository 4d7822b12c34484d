#include "data/stop_text.h"

#include <algorithm>

namespace lora {

StopText::StopText(std::vector<std::string> stop) : stop_(std::move(stop)) {
  std::erase_if(stop_, [](const std::string& s) { return s.empty(); });
}

std::string StopText::add(const std::string& piece) {
  if (stopped_) return "";
  text_ += piece;
  size_t end = text_.size();
  for (const std::string& s : stop_)
    if (const size_t at = text_.find(s, released_ > s.size() ? released_ - s.size() : 0);
        at != std::string::npos && at < end)
      end = at, stopped_ = true;
  if (stopped_) {
    text_.resize(end);
  } else {
    for (const std::string& s : stop_)  // the longest tail that could still grow into a stop string
      for (size_t n = std::min(s.size() - 1, text_.size()); n > 0; --n)
        if (text_.compare(text_.size() - n, n, s, 0, n) == 0) {
          end = std::min(end, text_.size() - n);
          break;
        }
  }
  std::string out;
  if (end > released_) {
    out = text_.substr(released_, end - released_);
    released_ = end;
  }
  return out;
}

std::string StopText::finish() {
  std::string out = text_.substr(std::min(released_, text_.size()));
  released_ = text_.size();
  return out;
}

}  // namespace lora
