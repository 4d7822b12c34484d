// Unicode NFC for Qwen's normalizer: canonical decomposition, canonical ordering, canonical
// composition (UAX #15), with Hangul syllables done arithmetically. Most text is already NFC and
// takes the fast path: no code point that could change anything.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/normalize.h"
#include "tokenizer/utf8.h"

namespace lora {

namespace {

#include "tokenizer/nfc_data.inc"

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;
// Bytes of malformed UTF-8 pass through unchanged as "code points" above U+10FFFF that never combine.
constexpr uint32_t kRawByte = 0x80000000u;

uint32_t combining_class(uint32_t cp) {
  if (cp < 0x300 || cp >= kRawByte) return 0;
  const auto* end = std::end(kCombiningClass);
  const auto* it = std::upper_bound(std::begin(kCombiningClass), end, cp,
                                    [](uint32_t v, const uint32_t(&r)[3]) { return v < r[0]; });
  if (it == std::begin(kCombiningClass)) return 0;
  --it;
  return cp <= (*it)[1] ? (*it)[2] : 0;
}

const uint32_t* decomposition(uint32_t cp) {
  const auto* end = std::end(kDecomposition);
  const auto* it = std::lower_bound(std::begin(kDecomposition), end, cp,
                                    [](const uint32_t(&r)[3], uint32_t v) { return r[0] < v; });
  return it != end && (*it)[0] == cp ? *it : nullptr;
}

uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto* end = std::end(kComposition);
  const auto* it = std::lower_bound(std::begin(kComposition), end, std::pair(a, b), [](const uint32_t(&r)[3], std::pair<uint32_t, uint32_t> v) {
    return r[0] != v.first ? r[0] < v.first : r[1] < v.second;
  });
  return it != end && (*it)[0] == a && (*it)[1] == b ? (*it)[2] : 0;
}

// Code points that appear second in a composition (so may merge into the character before them).
const std::vector<uint32_t>& composition_seconds() {
  static const std::vector<uint32_t> seconds = [] {
    std::vector<uint32_t> v;
    for (const auto& r : kComposition) v.push_back(r[1]);
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
  }();
  return seconds;
}

bool may_change(uint32_t cp) {
  if (cp < 0x300) return false;
  if ((cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= kSBase && cp < kSBase + kSCount)) return false;  // CJK ideographs, Hangul syllables
  if (cp >= kVBase && cp < kVBase + kVCount) return true;
  if (cp > kTBase && cp < kTBase + kTCount) return true;
  if (combining_class(cp) != 0 || decomposition(cp)) return true;
  return std::binary_search(composition_seconds().begin(), composition_seconds().end(), cp);
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (const uint32_t* d = decomposition(cp)) {
    decompose(d[1], out);
    if (d[2]) decompose(d[2], out);
    return;
  }
  out.push_back(cp);
}

}  // namespace

// NFC of a stretch that needs the full algorithm.
static std::string nfc_slow(std::string_view text) {
  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8::valid_sequence_length(text, i);
    if (n) decompose(utf8::decode(text.data() + i, n), cps), i += n;
    else cps.push_back(kRawByte | static_cast<unsigned char>(text[i])), ++i;
  }
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (combining_class(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && combining_class(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + i, cps.begin() + j,
                     [](uint32_t a, uint32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Canonical composition: a character joins the last starter unless something between them blocks it.
  std::vector<uint32_t> out;
  out.reserve(cps.size());
  size_t starter = SIZE_MAX;
  uint32_t last_class = 0;
  for (uint32_t cp : cps) {
    const uint32_t cc = combining_class(cp);
    if (starter != SIZE_MAX && (out.size() - 1 == starter || (last_class < cc))) {
      if (const uint32_t c = cp < kRawByte ? compose(out[starter], cp) : 0) {
        out[starter] = c;
        continue;
      }
    }
    if (cc == 0) starter = out.size();
    last_class = cc;
    out.push_back(cp);
  }
  std::string s;
  s.reserve(text.size());
  for (uint32_t cp : out) {
    if (cp >= kRawByte) s += char(cp & 0xFF);
    else utf8::append(s, cp);
  }
  return s;
}

// A character that is not may_change() is a safe boundary: nothing before it reorders or composes
// across it. Only the stretches around other characters (from the safe character before them, which
// they may compose with, to the next safe one) go through the full algorithm; the rest is copied.
std::string nfc(std::string_view text) {
  std::string out;
  size_t copied = 0, last_safe = 0;
  auto safe_at = [&](size_t i, size_t& n) {
    n = utf8::valid_sequence_length(text, i);
    if (!n) return n = 1, true;  // malformed bytes pass through and block composition
    return static_cast<unsigned char>(text[i]) < 0xCC || !may_change(utf8::decode(text.data() + i, n));
  };
  for (size_t i = 0, n = 0; i < text.size();) {
    if (safe_at(i, n)) {
      last_safe = i;
      i += n;
      continue;
    }
    const size_t start = std::max(last_safe, copied);
    size_t end = i + n;
    while (end < text.size() && !safe_at(end, n)) end += n;
    if (out.empty()) out.reserve(text.size());
    out.append(text.substr(copied, start - copied));
    out += nfc_slow(text.substr(start, end - start));
    copied = last_safe = i = end;
  }
  if (copied == 0) return std::string(text);
  out.append(text.substr(copied));
  return out;
}

}  // namespace lora
