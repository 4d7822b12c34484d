#pragma once
// Open-addressing hash tables for the two lookups BPE does millions of times per megabyte of text:
// string -> token id and (left id, right id) -> merge. Flat arrays with linear probing; keys of the
// string table are views into storage the owner keeps alive (the vocabulary).
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace lora {

inline uint64_t hash_bytes(std::string_view s) {
  // FNV-1a over 8-byte words, then a final mix: fast for the short strings of a vocabulary.
  uint64_t h = 0xcbf29ce484222325ull ^ s.size();
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, s.data() + i, s.size() - i);
  h = (h ^ tail) * 0x100000001b3ull;
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  return h;
}

inline uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

class StringIdMap {
 public:
  // Inserts or overwrites. `key` must stay valid as long as the map is used.
  void insert(std::string_view key, int32_t id) {
    if ((count_ + 1) * 2 > slots_.size()) grow();
    Slot& s = probe(key, hash_bytes(key));
    if (s.id < 0) ++count_;
    s = Slot{key, id};
  }
  // -1 when absent.
  int32_t find(std::string_view key) const {
    if (slots_.empty()) return -1;
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash_bytes(key) & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.key == key) return s.id;
    }
  }
  size_t size() const { return count_; }
  void reserve(size_t n) {
    while (slots_.size() < n * 2) grow();
  }

 private:
  struct Slot {
    std::string_view key;
    int32_t id = -1;
  };
  Slot& probe(std::string_view key, uint64_t h) {
    const size_t mask = slots_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask)
      if (slots_[i].id < 0 || slots_[i].key == key) return slots_[i];
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
    for (const Slot& s : old)
      if (s.id >= 0) probe(s.key, hash_bytes(s.key)) = s;
  }
  std::vector<Slot> slots_;
  size_t count_ = 0;
};

// (left, right) token pair -> the merge that joins them: its rank (lower merges first) and the id
// of the merged token.
class MergeMap {
 public:
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  void insert(int32_t left, int32_t right, Merge m) {
    if ((count_ + 1) * 2 > slots_.size()) grow();
    Slot& s = probe(key_of(left, right));
    if (s.key == kEmpty) ++count_;
    s.key = key_of(left, right);
    s.merge = m;
  }
  const Merge* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = key_of(left, right);
    const size_t mask = slots_.size() - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.merge;
      if (s.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return count_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t key_of(int32_t l, int32_t r) { return (uint64_t(uint32_t(l)) << 32) | uint32_t(r); }
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge{};
  };
  Slot& probe(uint64_t key) {
    const size_t mask = slots_.size() - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask)
      if (slots_[i].key == kEmpty || slots_[i].key == key) return slots_[i];
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
    for (const Slot& s : old)
      if (s.key != kEmpty) probe(s.key) = s;
  }
  std::vector<Slot> slots_;
  size_t count_ = 0;
};

}  // namespace lora
