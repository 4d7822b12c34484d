#include "tokenizer/pretokenize.h"

#include "core/error.h"

namespace lora {

namespace {

std::string pattern_of(const nlohmann::json& j, const std::string& path, bool& literal) {
  const nlohmann::json& p = j.at("pattern");
  if (p.contains("Regex")) return literal = false, p["Regex"].get<std::string>();
  if (p.contains("String")) return literal = true, p["String"].get<std::string>();
  fail_format(path, "pre_tokenizer pattern {} is neither String nor Regex", p.dump());
}

// Rebuilds `text` piece by piece with `rewrite(piece, index) -> new piece`, keeping one range per piece.
template <typename F> void rewrite_pieces(std::string& text, std::vector<PreTokenizer::Range>& ranges, F&& rewrite) {
  std::string out;
  out.reserve(text.size() + ranges.size() * 3);
  std::vector<PreTokenizer::Range> out_ranges;
  out_ranges.reserve(ranges.size());
  for (size_t i = 0; i < ranges.size(); ++i) {
    const std::string piece = rewrite(std::string_view(text).substr(ranges[i].first, ranges[i].second - ranges[i].first), i);
    out_ranges.emplace_back(uint32_t(out.size()), uint32_t(out.size() + piece.size()));
    out += piece;
  }
  text = std::move(out);
  ranges = std::move(out_ranges);
}

}  // namespace

PreTokenizer PreTokenizer::from_hf_json(const nlohmann::json& j, const std::string& path) {
  PreTokenizer p;
  if (!j.is_null()) {
    try {
      p.add_step(j, path);
    } catch (const nlohmann::json::exception& e) {
      fail_format(path, "bad pre_tokenizer {}: {}", j.dump().substr(0, 200), e.what());
    }
  }
  return p;
}

void PreTokenizer::add_step(const nlohmann::json& j, const std::string& path) {
  const std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const nlohmann::json& s : j.at("pretokenizers")) add_step(s, path);
  } else if (type == "Split") {
    if (j.value("invert", false)) fail_format(path, "pre_tokenizer Split with invert=true is not supported");
    bool literal = false;
    const std::string pattern = pattern_of(j, path, literal);
    Step s;
    s.regex = std::make_shared<Regex>(pattern, literal);
    const std::string b = j.value("behavior", "Isolated");
    if (b == "Isolated") s.behavior = Behavior::Isolated;
    else if (b == "Removed") s.behavior = Behavior::Removed;
    else if (b == "MergedWithPrevious") s.behavior = Behavior::MergedWithPrevious;
    else if (b == "MergedWithNext") s.behavior = Behavior::MergedWithNext;
    else if (b == "Contiguous") s.behavior = Behavior::Contiguous;
    else fail_format(path, "pre_tokenizer Split behavior '{}' is not supported", b);
    steps_.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    byte_level_ = true;
    if (j.value("add_prefix_space", false)) {
      Step s;
      s.kind = Step::Kind::PrefixSpace;
      steps_.push_back(std::move(s));
    }
    if (j.value("use_regex", true)) {
      Step s;
      s.regex = std::make_shared<Regex>(split_pattern::kGpt2);
      steps_.push_back(std::move(s));
    }
  } else if (type == "Digits") {
    Step s;
    s.regex = std::make_shared<Regex>(j.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
    steps_.push_back(std::move(s));
  } else if (type == "Metaspace") {
    Step s;
    s.kind = Step::Kind::Metaspace;
    s.replacement = j.value("replacement", "\xE2\x96\x81");
    // Older files have add_prefix_space instead of prepend_scheme.
    std::string scheme = j.value("prepend_scheme", j.value("add_prefix_space", true) ? "always" : "never");
    if (scheme == "always") s.prepend = Prepend::Always;
    else if (scheme == "first") s.prepend = Prepend::First;
    else if (scheme == "never") s.prepend = Prepend::Never;
    else fail_format(path, "Metaspace prepend_scheme '{}' is not supported", scheme);
    s.metaspace_split = j.value("split", true);
    if (s.metaspace_split) s.regex = std::make_shared<Regex>(s.replacement, true);
    steps_.push_back(std::move(s));
  } else {
    fail_format(path, "pre_tokenizer type '{}' is not supported", type);
  }
}

void PreTokenizer::split(const std::string& text, const Regex& regex, Behavior behavior, std::vector<Range>& ranges) {
  std::vector<Range> out;
  out.reserve(ranges.size() * 2);
  auto emit = [&](size_t b, size_t e) {
    if (e > b) out.emplace_back(uint32_t(b), uint32_t(e));
  };
  for (const Range& r : ranges) {
    const std::string_view piece = std::string_view(text).substr(r.first, r.second - r.first);
    size_t cursor = r.first;  // end of what has been emitted (or, for MergedWithNext, start of the pending piece)
    size_t last_match_end = SIZE_MAX;
    regex.for_each_match(piece, [&](size_t mb, size_t me) {
      mb += r.first, me += r.first;
      switch (behavior) {
        case Behavior::Isolated: emit(cursor, mb); emit(mb, me); cursor = me; break;
        case Behavior::Removed: emit(cursor, mb); cursor = me; break;
        case Behavior::MergedWithPrevious: emit(cursor, me); cursor = me; break;
        case Behavior::MergedWithNext: emit(cursor, mb); cursor = mb; break;
        case Behavior::Contiguous:
          if (mb == last_match_end && !out.empty() && out.back().second == mb) {
            out.back().second = uint32_t(me);
          } else {
            emit(cursor, mb);
            emit(mb, me);
          }
          cursor = last_match_end = me;
          break;
      }
    });
    emit(cursor, r.second);
  }
  ranges = std::move(out);
}

void PreTokenizer::metaspace(const Step& step, std::string& text, bool at_text_start, std::vector<Range>& ranges) const {
  rewrite_pieces(text, ranges, [&](std::string_view piece, size_t index) {
    std::string t;
    t.reserve(piece.size() + 8);
    for (char c : piece) {
      if (c == ' ') t += step.replacement;
      else t += c;
    }
    // Hugging Face prepends only when the piece does not already begin with the replacement, and
    // for "first" only on the piece at offset 0 of the whole input.
    const bool prepend = step.prepend == Prepend::Always || (step.prepend == Prepend::First && at_text_start && index == 0 &&
                                                             ranges[0].first == 0);
    if (prepend && t.compare(0, step.replacement.size(), step.replacement) != 0) t.insert(0, step.replacement);
    return t;
  });
  if (step.metaspace_split) split(text, *step.regex, Behavior::MergedWithNext, ranges);
}

void PreTokenizer::prefix_space(std::string& text, std::vector<Range>& ranges) {
  rewrite_pieces(text, ranges, [](std::string_view piece, size_t) {
    std::string t;
    if (!piece.empty() && piece[0] != ' ') t += ' ';
    t += piece;
    return t;
  });
}

void PreTokenizer::run(std::string& text, bool at_text_start, std::vector<Range>& words) const {
  words.clear();
  if (text.empty()) return;
  words.emplace_back(0, uint32_t(text.size()));
  for (const Step& s : steps_) {
    switch (s.kind) {
      case Step::Kind::Split: split(text, *s.regex, s.behavior, words); break;
      case Step::Kind::PrefixSpace: prefix_space(text, words); break;
      case Step::Kind::Metaspace: metaspace(s, text, at_text_start, words); break;
    }
  }
}

}  // namespace lora
