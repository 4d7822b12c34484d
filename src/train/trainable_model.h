#pragma once
// A base model wrapped for fine-tuning, like PEFT's PeftModel: the frozen base is never modified;
// what trains (LoRA adapters, or copies of whole weights for full / freeze fine-tuning, trained biases,
// modules_to_save) lives here with its gradient.
//
//   TrainableModel m = TrainableModel::lora(base, config, seed);
//   m.zero_grad();
//   auto r = m.forward_backward(tokens, targets, B, T, 1.0f / n_target_tokens);
//   optimizer.step(m.params());
#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "adapters/lora_config.h"
#include "adapters/lora_linear.h"
#include "core/profiler.h"
#include "kernels/cross_entropy.h"
#include "kernels/rope.h"
#include "model/model.h"

namespace lora {

enum class FinetuningType { Lora, Full, Freeze };

// One trainable tensor with its gradient, named as it is saved (PEFT key for adapters, Hugging Face
// name for whole weights).
struct Param {
  std::string name;
  Tensor* value = nullptr;
  Tensor* grad = nullptr;
  bool weight_decay = true;  // false for biases and norm weights, as Hugging Face's Trainer does
};

// The seven linear layers of a block, in Hugging Face order.
enum Proj { kQ, kK, kV, kO, kGate, kUp, kDown, kNumProj };
const char* proj_module_path(Proj p);  // "self_attn.q_proj", ..., "mlp.down_proj"
// The projection whose LoRA A the adapter of p uses: p itself, but in a model that fuses q|k|v and gate|up (Phi-3,
// where PEFT adapts qkv_proj and gate_up_proj as one module each) the first part's for every part: kK, kV -> kQ,
// kUp -> kGate. The parts share that tensor; their gradients of it are summed into the first part's.
Proj lora_a_holder(Proj p, const ModelConfig& c);

struct LinearSlot {
  Tensor weight;                      // frozen base view, or a trainable f32 copy
  Tensor bias;                        // may be empty
  std::unique_ptr<LoraLinear> lora;   // may be null
  Tensor weight_grad, bias_grad;      // empty when frozen
  LinearParams params();
};

// LoRA on the token embedding (PEFT layout): A [r, vocab] starts at zero, B [hidden, r] random.
struct EmbeddingLora {
  int64_t r = 0;
  float scaling = 1.0f;
  Tensor lora_embedding_a, lora_embedding_b, grad_a, grad_b;
};

class TrainableModel {
 public:
  static TrainableModel lora(const Model& base, const LoraConfig& config, uint64_t seed);
  static TrainableModel full(const Model& base);
  // Only the last n_layers blocks train (every weight in them), like LLaMA-Factory's "freeze".
  static TrainableModel freeze(const Model& base, int64_t n_layers);

  TrainableModel(TrainableModel&&) noexcept;
  ~TrainableModel();

  struct Result {
    double loss_sum = 0;   // Σ NLL over the counted targets
    int64_t count = 0;     // targets that are not kIgnoreIndex
  };
  // B sequences of T tokens; targets[b*T + t] is the token to predict after position t, or
  // kIgnoreIndex. Gradients of grad_scale · Σ NLL accumulate into every param's grad.
  Result forward_backward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T, float grad_scale);
  // The loss alone (no dropout, no gradients).
  Result evaluate(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T);

  std::vector<Param>& params() { return params_; }
  void zero_grad();

  int64_t trainable_parameter_count() const;
  int64_t all_parameter_count() const;  // base + adapter parameters, as PEFT counts them
  std::string trainable_report() const;  // "trainable params: X || all params: Y || trainable%: Z"

  const Model& base() const { return base_; }
  FinetuningType type() const { return type_; }
  const LoraConfig& lora_config() const { return config_; }

  // The effective weights (base views where frozen, trained copies where not) and the adapters.
  const ModelWeights& weights() const { return weights_; }
  LinearSlot& slot(int64_t layer, Proj p) { return slots_[size_t(layer)][p]; }
  const LinearSlot& slot(int64_t layer, Proj p) const { return slots_[size_t(layer)][p]; }
  EmbeddingLora* embedding_lora() { return embed_lora_.get(); }
  LoraLinear* lm_head_lora() { return head_lora_.get(); }
  // Every LoRA-adapted linear, in module order (the blocks' projections, then lm_head).
  std::vector<LoraLinear*> lora_layers();
  // AdaLoRA's options inside the configuration (the trainer sets total_step and, at the end, the final
  // rank_pattern); null for other fine-tuning.
  AdaLoraOptions* adalora_options() { return config_.adalora ? &*config_.adalora : nullptr; }

  bool gradient_checkpointing = false;  // keep only each block's input; recompute the rest in backward
  int64_t loss_chunk_rows = 256;        // rows of logits alive at once in the cross-entropy
  Profiler* profiler = nullptr;         // when set, every kernel family of the step is timed into it
  std::mt19937_64& rng() { return rng_; }

 private:
  struct LayerActivations;
  struct ForwardScratch;
  struct GradScratch;
  explicit TrainableModel(const Model& base);
  void register_params();
  void make_trainable(Tensor& weight, Tensor& grad);
  void make_layer_norms_trainable(int64_t layer);
  void sum_shared_a_gradients(int64_t layer);  // (see lora_a_holder)  // attn/ffn norms (and q/k head norms) of one block
  Result run(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T, float grad_scale, bool backward);
  // bf16 when every linear weight of block l is bf16 or quantized, else f32 (train/activations.h)
  DType storage_type(int64_t l) const;
  void layer_forward(int64_t l, LayerActivations& a, int64_t B, int64_t T, bool training, uint64_t seed);
  void layer_backward(int64_t l, LayerActivations& a, Tensor& dx, int64_t B, int64_t T);
  // The same with the block's activations stored as E (float or bf16).
  template <typename E> void layer_forward_as(int64_t l, LayerActivations& a, int64_t B, int64_t T, bool training, uint64_t seed);
  template <typename E> void layer_backward_as(int64_t l, LayerActivations& a, Tensor& dx, int64_t B, int64_t T);

  const Model& base_;
  FinetuningType type_ = FinetuningType::Lora;
  LoraConfig config_;
  ModelWeights weights_;
  std::vector<std::array<LinearSlot, kNumProj>> slots_;
  // Grads of a block's norm weights (full/freeze only), indexed by NormWeight; q/k head norms only with qk_norm.
  // Gemma's post-attention and post-MLP norms only with gemma_block.
  enum NormWeight { kAttnNorm, kFfnNorm, kQNorm, kKNorm, kPostAttnNorm, kPostFfnNorm, kNumNorms };
  std::vector<std::array<Tensor, kNumNorms>> norm_grads_;
  Tensor embed_grad_, head_grad_, final_norm_grad_;
  bool embed_trainable_ = false, head_trainable_ = false, norms_trainable_ = false;
  std::vector<bool> layer_norms_trainable_;
  std::unique_ptr<EmbeddingLora> embed_lora_;
  std::unique_ptr<LoraLinear> head_lora_;
  std::vector<Param> params_;
  std::mt19937_64 rng_;
  RopeTable rope_;
  RopeTable rope_local_;  // the local layers' RoPE (Gemma 3), empty otherwise
  std::vector<LayerActivations> acts_;  // one per block, or one shared with gradient checkpointing
  std::vector<Tensor> residual_;        // [L + 1] residual stream at each block's input, and the output
  std::unique_ptr<ForwardScratch> forward_scratch_;
  std::array<std::unique_ptr<GradScratch>, 2> grad_scratch_;  // for f32 blocks, for bf16 blocks
  Tensor rstd_final_, xn_final_;
  std::vector<float> logits_workspace_;  // lm_head_cross_entropy's chunk of logits, kept between steps
  LinearSaved head_saved_;
  std::vector<int32_t> positions_;
};

}  // namespace lora
