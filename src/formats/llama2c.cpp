#include "formats/llama2c.h"

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/rope_layout.h"
#include "tokenizer/tokenizer.h"

namespace lora {

namespace {

// Bounds that every real checkpoint satisfies and that keep size arithmetic far from overflow.
constexpr int32_t kMaxDim = 1 << 16, kMaxHidden = 1 << 18, kMaxLayers = 1024, kMaxVocab = 1 << 22,
                  kMaxSeqLen = 1 << 20;

std::string header_problem(const Llama2cHeader& h) {
  auto in = [](int32_t v, int32_t max) { return v > 0 && v <= max; };
  if (!in(h.dim, kMaxDim)) return fmt::format("dim = {} is out of range", h.dim);
  if (!in(h.hidden_dim, kMaxHidden)) return fmt::format("hidden_dim = {} is out of range", h.hidden_dim);
  if (!in(h.n_layers, kMaxLayers)) return fmt::format("n_layers = {} is out of range", h.n_layers);
  if (!in(h.n_heads, h.dim)) return fmt::format("n_heads = {} is out of range", h.n_heads);
  if (!in(h.n_kv_heads, h.n_heads)) return fmt::format("n_kv_heads = {} is out of range", h.n_kv_heads);
  if (h.vocab_size == 0 || h.vocab_size < -kMaxVocab || h.vocab_size > kMaxVocab)
    return fmt::format("vocab_size = {} is out of range", h.vocab_size);
  if (!in(h.seq_len, kMaxSeqLen)) return fmt::format("seq_len = {} is out of range", h.seq_len);
  if (h.dim % h.n_heads != 0) return fmt::format("dim {} is not a multiple of n_heads {}", h.dim, h.n_heads);
  if ((h.dim / h.n_heads) % 2 != 0) return fmt::format("head size {} is odd", h.dim / h.n_heads);
  if (h.n_heads % h.n_kv_heads != 0)
    return fmt::format("n_heads {} is not a multiple of n_kv_heads {}", h.n_heads, h.n_kv_heads);
  return "";
}

Llama2cHeader read_header(const uint8_t* data) {
  int32_t v[7];
  std::memcpy(v, data, sizeof v);
  return Llama2cHeader{v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
}

ModelConfig config_from_header(const Llama2cHeader& h) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.hidden_size = h.dim;
  c.intermediate_size = h.hidden_dim;
  c.num_hidden_layers = h.n_layers;
  c.num_attention_heads = h.n_heads;
  c.num_key_value_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.vocab_size = h.vocab_size > 0 ? h.vocab_size : -int64_t(h.vocab_size);
  c.max_position_embeddings = h.seq_len;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.tie_word_embeddings = h.shared_classifier();
  c.attention_bias = false;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  return c;
}

// Hands out consecutive fp32 tensors of the file, in the order run.c's memory_map_weights reads them.
class WeightCursor {
 public:
  WeightCursor(std::shared_ptr<MappedFile> file, size_t offset) : file_(std::move(file)), offset_(offset) {}
  Tensor next(std::vector<int64_t> shape) {
    Tensor t(DType::F32, std::move(shape), const_cast<uint8_t*>(file_->data() + offset_), file_);
    offset_ += t.nbytes();
    return t;
  }
  void skip_floats(uint64_t n) { offset_ += n * sizeof(float); }

 private:
  std::shared_ptr<MappedFile> file_;
  size_t offset_;
};

}  // namespace

std::string find_llama2c_tokenizer(const std::string& path, int64_t vocab_size) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(path).parent_path();
  for (const std::string& name : {std::string("tokenizer.bin"), fmt::format("tok{}.bin", vocab_size)}) {
    const fs::path p = dir / name;
    if (fs::is_regular_file(p)) return p.string();
  }
  return "";
}

uint64_t Llama2cHeader::expected_file_size() const {
  const uint64_t d = uint64_t(dim), hd = uint64_t(hidden_dim), L = uint64_t(n_layers);
  const uint64_t V = uint64_t(vocab_size > 0 ? vocab_size : -int64_t(vocab_size));
  const uint64_t head_size = d / uint64_t(n_heads), kv_dim = head_size * uint64_t(n_kv_heads);
  uint64_t floats = V * d;                        // token_embedding
  floats += L * d;                                // rms_att
  floats += L * d * d + 2 * L * kv_dim * d;       // wq, wk, wv
  floats += L * d * d;                            // wo
  floats += L * d;                                // rms_ffn
  floats += 3 * L * hd * d;                       // w1, w2, w3
  floats += d;                                    // rms_final
  floats += uint64_t(seq_len) * head_size;        // freq_cis_real + freq_cis_imag (unused)
  if (!shared_classifier()) floats += V * d;      // wcls
  return kLlama2cHeaderSize + floats * sizeof(float);
}

std::optional<Llama2cHeader> parse_llama2c_header(const uint8_t* data, size_t size) {
  if (size < kLlama2cHeaderSize) return std::nullopt;
  const Llama2cHeader h = read_header(data);
  if (!header_problem(h).empty()) return std::nullopt;
  return h;
}

Model load_llama2c(const std::string& path, const LoadOptions& options) {
  auto file = MappedFile::open(path);
  if (file->size() < kLlama2cHeaderSize)
    fail_format(path, "truncated: a llama2.c checkpoint needs a {}-byte header, found {} bytes", kLlama2cHeaderSize,
                file->size());
  const Llama2cHeader h = read_header(file->data());
  if (const std::string problem = header_problem(h); !problem.empty())
    fail_format(path, "not a valid llama2.c checkpoint header: {}", problem);
  const uint64_t expected = h.expected_file_size();
  if (file->size() < expected)
    fail_format(path, "truncated: expected {} bytes for this llama2.c header, found {}", expected, file->size());
  if (file->size() > expected)
    fail_format(path, "expected {} bytes for this llama2.c header, found {} ({} unexpected trailing bytes)", expected,
                file->size(), file->size() - expected);

  Model m;
  m.config = config_from_header(h);
  m.config.validate(path);
  m.source_path = path;
  m.source_format = "llama2c";
  const ModelConfig& c = m.config;
  const int64_t L = c.num_hidden_layers, D = c.hidden_size, H = c.intermediate_size, V = c.vocab_size;
  const int64_t kv = c.kv_dim();

  WeightCursor cur(file, kLlama2cHeaderSize);
  ModelWeights& w = m.weights;
  w.layers.resize(size_t(L));
  w.tok_embeddings = cur.next({V, D});
  for (auto& l : w.layers) l.attn_norm = cur.next({D});
  for (auto& l : w.layers) l.wq = rope_interleaved_to_half(cur.next({c.q_dim(), D}), c.num_attention_heads);
  for (auto& l : w.layers) l.wk = rope_interleaved_to_half(cur.next({kv, D}), c.num_key_value_heads);
  for (auto& l : w.layers) l.wv = cur.next({kv, D});
  for (auto& l : w.layers) l.wo = cur.next({D, c.q_dim()});
  for (auto& l : w.layers) l.ffn_norm = cur.next({D});
  for (auto& l : w.layers) l.w_gate = cur.next({H, D});
  for (auto& l : w.layers) l.w_down = cur.next({D, H});
  for (auto& l : w.layers) l.w_up = cur.next({H, D});
  w.norm = cur.next({D});
  cur.skip_floats(uint64_t(h.seq_len) * uint64_t(c.head_dim));
  w.lm_head = h.shared_classifier() ? w.tok_embeddings : cur.next({V, D});

  if (options.load_tokenizer && options.tokenizer_path.empty()) {
    if (const std::string tok = find_llama2c_tokenizer(path, V); !tok.empty()) m.tokenizer = load_tokenizer(tok);
  }
  return m;
}

}  // namespace lora
