#include "tokenizer/bpe.h"

#include <algorithm>
#include <climits>
#include <queue>

#include <fmt/format.h>

#include "tokenizer/utf8.h"

namespace lora {

void BpeModel::resolve_byte_tokens() {
  for (int b = 0; b < 256; ++b) byte_tokens_[b] = vocab_.find(fmt::format("<0x{:02X}>", b));
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const {
  bool last_was_unk = false;
  for (size_t i = 0; i < word.size();) {
    const size_t n = options_.byte_symbols ? 1 : utf8::char_length(word, i);
    const std::string_view unit = word.substr(i, n);
    i += n;
    if (const int32_t id = vocab_.find(unit); id >= 0) {
      symbols.push_back(id);
      last_was_unk = false;
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (unsigned char c : unit) all = all && byte_tokens_[c] >= 0;
      if (all) {
        for (unsigned char c : unit) symbols.push_back(byte_tokens_[c]);
        last_was_unk = false;
        continue;
      }
    }
    if (options_.unk_id < 0) continue;  // Hugging Face drops the character when there is no unk token
    if (!(options_.fuse_unk && last_was_unk)) symbols.push_back(options_.unk_id);
    last_was_unk = true;
  }
}

// Few symbols (the common case): rescanning all pairs is cheaper than a heap.
void BpeModel::merge_short(std::vector<int32_t>& s) const {
  while (s.size() > 1) {
    int32_t best_rank = INT32_MAX, best_merged = -1;
    size_t best = 0;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const MergeMap::Merge* m = merges_.find(s[i], s[i + 1]);
      if (m && m->rank < best_rank) best_rank = m->rank, best_merged = m->merged, best = i;
    }
    if (best_merged < 0) return;
    s[best] = best_merged;
    s.erase(s.begin() + best + 1);
  }
}

// Long words (a run of CJK characters, a long number of spaces): a heap of candidate merges over a
// linked list of symbols, O(n log n). Stale candidates are recognised by their recorded pair.
void BpeModel::merge_long(std::vector<int32_t>& s) const {
  const int32_t n = int32_t(s.size());
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; ++i) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
  struct Candidate {
    int32_t rank, pos, left, right, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto consider = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    if (const MergeMap::Merge* m = merges_.find(s[pos], s[next[pos]]))
      heap.push({m->rank, pos, s[pos], s[next[pos]], m->merged});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  std::vector<bool> alive(n, true);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const int32_t r = next[c.pos];
    if (!alive[c.pos] || r < 0 || s[c.pos] != c.left || s[r] != c.right) continue;
    s[c.pos] = c.merged;
    alive[r] = false;
    next[c.pos] = next[r];
    if (next[r] >= 0) prev[next[r]] = c.pos;
    consider(prev[c.pos]);
    consider(c.pos);
  }
  size_t k = 0;
  for (int32_t i = 0; i >= 0 && i < n; i = next[i]) s[k++] = s[i];
  s.resize(k);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges)
    if (const int32_t id = vocab_.find(word); id >= 0) return out.push_back(id);
  thread_local std::vector<int32_t> symbols;
  symbols.clear();
  initial_symbols(word, symbols);
  if (symbols.size() <= 48) merge_short(symbols);
  else merge_long(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

}  // namespace lora
