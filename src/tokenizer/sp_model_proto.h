#pragma once
// The parts of SentencePiece's ModelProto (sentencepiece_model.proto) this project needs, read with
// a small bounds-checked protobuf decoder: every piece with its score and type, the model type, and
// the normalizer flags. A truncated or corrupt tokenizer.model becomes a FormatError naming the file.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/spm_bpe.h"

namespace lora {

struct SpModelProto {
  enum ModelType { kUnigram = 1, kBpe = 2, kWord = 3, kChar = 4 };
  SpmVocab vocab;  // pieces, scores, types; add_dummy_prefix from the normalizer spec
  int model_type = kUnigram;
  bool byte_fallback = false;
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  std::string normalizer_name;  // "identity", "nmt_nfkc", ...
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

SpModelProto parse_sp_model_proto(std::string_view bytes, const std::string& path);

}  // namespace lora
