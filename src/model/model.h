#pragma once
// The one internal representation every format loads into.
//
// Linear weights are [out_features, in_features] row-major, as torch.nn.Linear stores them, in f32 or
// bf16 (other stored types are converted on load). Norm weights and biases are f32; Gemma's (1+w) norm weights
// are held as the factor 1 + w (as GGUF stores them), so every RMSNorm here is x/rms(x)·weight. The rows of wq/wk
// (and bq/bk) are in Hugging Face "rotate_half" RoPE order: within a head, row i pairs with row
// i + head_dim/2. GGUF (llama arch) and llama2.c store interleaved pairs (2i, 2i+1); their loaders
// permute to this order and writers permute back.
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace lora {

class Tokenizer;

struct LayerWeights {
  Tensor attn_norm;                // [hidden]
  Tensor wq, wk, wv, wo;           // [q_dim, hidden], [kv_dim, hidden], [kv_dim, hidden], [hidden, q_dim]
  Tensor bq, bk, bv;               // empty unless config.attention_bias
  Tensor q_norm, k_norm;           // [head_dim] each, empty unless config.qk_norm
  Tensor post_attn_norm;           // [hidden], Gemma only: on the attention output before the residual add
  Tensor ffn_norm;                 // [hidden]
  Tensor w_gate, w_up, w_down;     // [inter, hidden], [inter, hidden], [hidden, inter]
  Tensor post_ffn_norm;            // [hidden], Gemma only: on the MLP output before the residual add

  // f(name, tensor) for every tensor of the block, empty ones included, named as the fields are.
  template <class F>
  void for_each(F&& f) const {
    f("attn_norm", attn_norm), f("wq", wq), f("wk", wk), f("wv", wv), f("wo", wo), f("bq", bq), f("bk", bk),
        f("bv", bv), f("q_norm", q_norm), f("k_norm", k_norm), f("post_attn_norm", post_attn_norm),
        f("ffn_norm", ffn_norm), f("w_gate", w_gate), f("w_up", w_up), f("w_down", w_down),
        f("post_ffn_norm", post_ffn_norm);
  }
};

struct ModelWeights {
  Tensor tok_embeddings;           // [vocab, hidden]
  std::vector<LayerWeights> layers;
  Tensor norm;                     // [hidden]
  Tensor lm_head;                  // [vocab, hidden]; shares storage with tok_embeddings when tied
};

struct Model {
  ModelConfig config;
  ModelWeights weights;
  std::shared_ptr<Tokenizer> tokenizer;  // may be null when none was found
  std::string source_path;
  std::string source_format;  // "hf", "gguf", "llama2c"

  int64_t parameter_count() const;  // unique parameters (a tied lm_head counts once)
};

}  // namespace lora
