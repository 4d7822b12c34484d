#include "tokenizer/normalize.h"

#include "core/error.h"

namespace lora {

namespace {
bool is_unicode_space(std::string_view s, size_t i, size_t& len) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= '\t' && c <= '\r')) return len = 1, true;
  return false;
}
}  // namespace

Normalizer Normalizer::from_hf_json(const nlohmann::json& j, const std::string& path) {
  Normalizer n;
  if (!j.is_null()) {
    try {
      n.add_step(j, path);
    } catch (const nlohmann::json::exception& e) {
      fail_format(path, "bad normalizer {}: {}", j.dump().substr(0, 200), e.what());
    }
  }
  return n;
}

void Normalizer::add_step(const nlohmann::json& j, const std::string& path) {
  const std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const nlohmann::json& s : j.at("normalizers")) add_step(s, path);
  } else if (type == "Prepend") {
    Step s;
    s.kind = Step::Kind::Prepend;
    s.text = j.at("prepend").get<std::string>();
    steps_.push_back(std::move(s));
  } else if (type == "Replace") {
    const nlohmann::json& p = j.at("pattern");
    Step s;
    s.kind = Step::Kind::Replace;
    s.text = j.at("content").get<std::string>();
    if (p.contains("String")) s.regex = std::make_shared<Regex>(p["String"].get<std::string>(), true);
    else if (p.contains("Regex")) s.regex = std::make_shared<Regex>(p["Regex"].get<std::string>());
    else fail_format(path, "normalizer Replace pattern {} is neither String nor Regex", p.dump());
    steps_.push_back(std::move(s));
  } else if (type == "NFC") {
    Step s;
    s.kind = Step::Kind::Nfc;
    steps_.push_back(std::move(s));
  } else if (type == "Strip") {
    Step s;
    s.kind = Step::Kind::Strip;
    s.left = j.value("strip_left", true);
    s.right = j.value("strip_right", true);
    steps_.push_back(std::move(s));
  } else {
    fail_format(path, "normalizer type '{}' is not supported", type);
  }
}

std::string Normalizer::apply(std::string_view text) const {
  std::string s(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::Prepend:
        // Hugging Face's Prepend leaves empty text empty.
        if (!s.empty()) s.insert(0, step.text);
        break;
      case Step::Kind::Replace: {
        std::string out;
        out.reserve(s.size() + s.size() / 4);
        size_t cursor = 0;
        step.regex->for_each_match(s, [&](size_t b, size_t e) {
          out.append(s, cursor, b - cursor);
          out += step.text;
          cursor = e;
        });
        out.append(s, cursor, std::string::npos);
        s = std::move(out);
        break;
      }
      case Step::Kind::Nfc: s = nfc(s); break;
      case Step::Kind::Strip: {
        size_t b = 0, e = s.size(), len = 0;
        if (step.left)
          while (b < e && is_unicode_space(s, b, len)) b += len;
        if (step.right)
          while (e > b && is_unicode_space(s, e - 1, len)) --e;
        s = s.substr(b, e - b);
        break;
      }
    }
  }
  return s;
}

}  // namespace lora
