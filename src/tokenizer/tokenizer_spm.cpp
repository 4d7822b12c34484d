// tokenizer.model: SentencePiece's own library encodes (it is the original, so ids match by
// construction); the pieces, scores and types come from our protobuf reader, which also gives a
// clear error on a damaged file and what the Hugging Face export needs.
#include <sentencepiece_processor.h>

#include "core/error.h"
#include "tokenizer/loaders.h"
#include "tokenizer/sp_model_proto.h"

namespace lora {

namespace {

class SentencePieceTokenizer : public SpmBpeTokenizer {
 public:
  SentencePieceTokenizer(SpModelProto proto, std::string_view bytes, const std::string& path)
      : SpmBpeTokenizer(proto.vocab, "sentencepiece"), proto_(std::move(proto)) {
    const auto status = processor_.LoadFromSerializedProto(bytes);
    if (!status.ok()) fail_format(path, "SentencePiece cannot load it: {}", status.ToString());
    const int32_t n = vocab_size();
    auto valid = [n](int32_t id) { return id >= 0 && id < n ? id : -1; };
    set_special_ids(valid(proto_.bos_id), valid(proto_.eos_id), valid(proto_.pad_id));
    set_add_special(proto_.bos_id >= 0, false);
  }
  const SpModelProto& proto() const { return proto_; }

 protected:
  void encode_text(std::string_view text, bool, std::vector<int32_t>& out) const override {
    std::vector<int> ids;
    const auto status = processor_.Encode(absl::string_view(text.data(), text.size()), &ids);
    if (!status.ok()) fail("SentencePiece failed to encode text: {}", status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }

 private:
  SpModelProto proto_;
  sentencepiece::SentencePieceProcessor processor_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::string& path, std::string_view bytes) {
  SpModelProto proto = parse_sp_model_proto(bytes, path);
  if (proto.model_type != SpModelProto::kBpe)
    proto.vocab.export_problem = fmt::format("it is a SentencePiece model of type {} (only BPE converts exactly)", proto.model_type);
  else if (!proto.normalizer_name.empty() && proto.normalizer_name != "identity")
    proto.vocab.export_problem = fmt::format("its normalizer is '{}' (only identity converts exactly)", proto.normalizer_name);
  else if (proto.remove_extra_whitespaces)
    proto.vocab.export_problem = "it removes extra whitespace, which Hugging Face's BPE pipeline cannot";
  try {
    return std::make_unique<SentencePieceTokenizer>(std::move(proto), bytes, path);
  } catch (const FormatError&) {
    throw;
  } catch (const Error& e) {
    fail_format(path, "{}", e.what());
  } catch (const std::exception& e) {
    // the library's own (darts-clone's "zero-length key" for an empty piece, which its status misses)
    fail_format(path, "SentencePiece cannot load it: {}", e.what());
  }
}

}  // namespace lora
