#include "tokenizer/sp_model_proto.h"

#include <cstring>

#include "core/error.h"

namespace lora {

namespace {

// Protobuf wire format: varint keys (field << 3 | wire type), then a varint, 8 bytes, a
// length-prefixed payload, or 4 bytes.
class ProtoReader {
 public:
  ProtoReader(std::string_view data, const std::string& path, const char* message)
      : data_(data), path_(path), message_(message) {}
  bool done() const { return pos_ >= data_.size(); }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) fail_format(path_, "truncated protobuf: a number in {} is cut off at byte {}", message_, pos_);
      const uint8_t b = static_cast<uint8_t>(data_[pos_++]);
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail_format(path_, "corrupt protobuf: overlong number in {}", message_);
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > data_.size() - pos_)
      fail_format(path_, "truncated protobuf: a field of {} needs {} bytes, only {} left", message_, n, data_.size() - pos_);
    const std::string_view s = data_.substr(pos_, size_t(n));
    pos_ += size_t(n);
    return s;
  }
  float fixed32_float() {
    if (data_.size() - pos_ < 4) fail_format(path_, "truncated protobuf: a float in {} is cut off", message_);
    float f;
    std::memcpy(&f, data_.data() + pos_, 4);
    pos_ += 4;
    return f;
  }
  void skip(int wire_type) {
    switch (wire_type) {
      case 0: varint(); break;
      case 1: need(8), pos_ += 8; break;
      case 2: bytes(); break;
      case 5: need(4), pos_ += 4; break;
      default: fail_format(path_, "corrupt protobuf: wire type {} in {} at byte {}", wire_type, message_, pos_);
    }
  }

 private:
  void need(size_t n) {
    if (data_.size() - pos_ < n) fail_format(path_, "truncated protobuf: {} is cut off at byte {}", message_, pos_);
  }
  std::string_view data_;
  const std::string& path_;
  const char* message_;
  size_t pos_ = 0;
};

void expect_wire(int got, int want, int field, const char* message, const std::string& path) {
  if (got != want) fail_format(path, "corrupt protobuf: field {} of {} has wire type {}, expected {}", field, message, got, want);
}

void parse_piece(std::string_view data, const std::string& path, SpmVocab& vocab) {
  ProtoReader r(data, path, "SentencePiece");
  std::string piece;
  float score = 0;
  int type = 1;
  while (!r.done()) {
    const uint64_t key = r.varint();
    const int field = int(key >> 3), wire = int(key & 7);
    if (field == 1) expect_wire(wire, 2, field, "SentencePiece", path), piece = std::string(r.bytes());
    else if (field == 2) expect_wire(wire, 5, field, "SentencePiece", path), score = r.fixed32_float();
    else if (field == 3) expect_wire(wire, 0, field, "SentencePiece", path), type = int(r.varint());
    else r.skip(wire);
  }
  if (type < 1 || type > 6) fail_format(path, "piece {} '{}' has unknown type {}", vocab.pieces.size(), piece, type);
  vocab.pieces.push_back(std::move(piece));
  vocab.scores.push_back(score);
  vocab.types.push_back(static_cast<TokenType>(type));
}

void parse_trainer_spec(std::string_view data, const std::string& path, SpModelProto& m) {
  ProtoReader r(data, path, "TrainerSpec");
  while (!r.done()) {
    const uint64_t key = r.varint();
    const int field = int(key >> 3), wire = int(key & 7);
    if (wire != 0) {
      r.skip(wire);
      continue;
    }
    const int64_t v = int64_t(r.varint());
    switch (field) {
      case 3: m.model_type = int(v); break;
      case 35: m.byte_fallback = v != 0; break;
      case 40: m.unk_id = int32_t(v); break;
      case 41: m.bos_id = int32_t(v); break;
      case 42: m.eos_id = int32_t(v); break;
      case 43: m.pad_id = int32_t(v); break;
      default: break;
    }
  }
}

void parse_normalizer_spec(std::string_view data, const std::string& path, SpModelProto& m) {
  ProtoReader r(data, path, "NormalizerSpec");
  while (!r.done()) {
    const uint64_t key = r.varint();
    const int field = int(key >> 3), wire = int(key & 7);
    if (field == 1 && wire == 2) m.normalizer_name = std::string(r.bytes());
    else if (field == 3 && wire == 0) m.vocab.add_dummy_prefix = r.varint() != 0;
    else if (field == 4 && wire == 0) m.remove_extra_whitespaces = r.varint() != 0;
    else if (field == 5 && wire == 0) m.escape_whitespaces = r.varint() != 0;
    else r.skip(wire);
  }
}

}  // namespace

SpModelProto parse_sp_model_proto(std::string_view bytes, const std::string& path) {
  SpModelProto m;
  bool has_trainer = false, has_normalizer = false;
  ProtoReader r(bytes, path, "ModelProto");
  while (!r.done()) {
    const uint64_t key = r.varint();
    const int field = int(key >> 3), wire = int(key & 7);
    if (field >= 1 && field <= 3) {
      expect_wire(wire, 2, field, "ModelProto", path);
      const std::string_view payload = r.bytes();
      if (field == 1) parse_piece(payload, path, m.vocab);
      else if (field == 2) parse_trainer_spec(payload, path, m), has_trainer = true;
      else parse_normalizer_spec(payload, path, m), has_normalizer = true;
    } else {
      r.skip(wire);
    }
  }
  // Protobuf cannot tell a file cut between two fields from a shorter one; the pieces come first
  // and the specs after them, so a missing spec means the end of the file is gone.
  if (m.vocab.pieces.empty()) fail_format(path, "not a SentencePiece model: no pieces");
  if (!has_trainer || !has_normalizer)
    fail_format(path, "truncated SentencePiece model: {} pieces but no {}", m.vocab.pieces.size(),
                has_trainer ? "normalizer_spec" : "trainer_spec");
  m.vocab.space = "\xE2\x96\x81";
  return m;
}

}  // namespace lora
