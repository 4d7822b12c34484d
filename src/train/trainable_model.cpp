// Building a TrainableModel: which tensors train, their initialization, and the parameter registry.
// The forward and backward passes are in train_step.cpp.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "adapters/adapter.h"
#include "core/error.h"
#include "core/linalg.h"
#include "core/matmul.h"
#include "core/quant.h"
#include "formats/weight_names.h"
#include "train/activations.h"
#include "train/trainable_model.h"

namespace lora {

const char* proj_module_path(Proj p) {
  static const char* names[kNumProj] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
  return names[p];
}

Proj lora_a_holder(Proj p, const ModelConfig& c) {
  if (!c.fused_linears) return p;
  if (p == kK || p == kV) return kQ;
  if (p == kUp) return kGate;
  return p;
}

void TrainableModel::sum_shared_a_gradients(int64_t l) {
  if (!base_.config.fused_linears) return;
  for (int p = 0; p < kNumProj; ++p) {
    const Proj holder = lora_a_holder(Proj(p), base_.config);
    LinearSlot& s = slots_[size_t(l)][p];
    if (holder == p || !s.lora) continue;
    LoraLinear& first = *slots_[size_t(l)][holder].lora;
    auto move_into = [](Tensor& sum, Tensor& part) {
      float* g = part.f32();
      for (int64_t i = 0; i < sum.numel(); ++i) {
        sum.f32()[i] += g[i];
        g[i] = 0.0f;
      }
    };
    move_into(first.grad_a, s.lora->grad_a);
    if (s.lora->adalora()) move_into(first.grad_e, s.lora->grad_e);
  }
}

LinearParams LinearSlot::params() {
  return LinearParams{&weight, bias.empty() ? nullptr : &bias, lora.get(),
                      weight_grad.empty() ? nullptr : &weight_grad, bias_grad.empty() ? nullptr : &bias_grad};
}

TrainableModel::TrainableModel(const Model& base) : base_(base), weights_(base.weights), slots_(base.weights.layers.size()) {
  for (size_t l = 0; l < slots_.size(); ++l) {
    const LayerWeights& w = base.weights.layers[l];
    const Tensor* weights[kNumProj] = {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down};
    const Tensor* biases[kNumProj] = {&w.bq, &w.bk, &w.bv, nullptr, nullptr, nullptr, nullptr};
    for (int p = 0; p < kNumProj; ++p) {
      slots_[l][p].weight = *weights[p];
      if (biases[p]) slots_[l][p].bias = *biases[p];
    }
  }
  norm_grads_.resize(slots_.size());
  layer_norms_trainable_.assign(slots_.size(), false);
  // A GGUF's quantized output matrix is multiplied twice a step (logits and their input gradient) over
  // the whole vocabulary: decoding its blocks each time cost a fifth of a SmolLM2-shaped step. Decoded to
  // bf16 once it costs 2 bytes a weight (56 MiB for SmolLM2, 250 MiB for Llama-2-7B), the lm_head QLoRA
  // keeps anyway. A tied embedding shares the decoded copy.
  if (is_ggml_quant(weights_.lm_head.dtype())) {
    const bool tied = weights_.lm_head.data() == weights_.tok_embeddings.data();
    weights_.lm_head = weights_.lm_head.to(DType::BF16);
    if (tied) weights_.tok_embeddings = weights_.lm_head;
  }
}

TrainableModel::TrainableModel(TrainableModel&&) noexcept = default;
TrainableModel::~TrainableModel() = default;

// Replaces a frozen view by an f32 copy that trains (the base tensor is untouched) and gives it a gradient.
void TrainableModel::make_trainable(Tensor& weight, Tensor& grad) {
  weight = weight.to(DType::F32);
  grad = Tensor(DType::F32, weight.shape());
}

namespace {

void fill_uniform(Tensor& t, float bound, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> d(-bound, bound);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = d(rng);
}

void fill_normal(Tensor& t, float stddev, std::mt19937_64& rng) {
  std::normal_distribution<float> d(0.0f, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = d(rng);
}

// ‖W_o‖ for every row o.
void row_norms(const Tensor& w, Tensor& out) {
  const int64_t rows = w.dim(0), cols = w.dim(1);
  Tensor w32 = w.dtype() == DType::F32 ? w : w.to(DType::F32);
  for (int64_t o = 0; o < rows; ++o) {
    double ss = 0;
    for (int64_t i = 0; i < cols; ++i) ss += double(w32.f32()[o * cols + i]) * w32.f32()[o * cols + i];
    out.f32()[o] = float(std::sqrt(ss));
  }
}

// PEFT's initializations: "true" is kaiming-uniform(a=√5) on A, i.e. U(±1/√in), with B = 0; "gaussian"
// draws A ~ N(0, (1/r)²); "false" leaves both at nn.Linear's default (B random too: the adapter is not
// an identity at start, useful for tests).
void init_lora(LoraLinear& l, const std::string& init, std::mt19937_64& rng) {
  if (init == "true") {
    fill_uniform(l.lora_a, 1.0f / std::sqrt(float(l.in_features)), rng);
  } else if (init == "gaussian") {
    fill_normal(l.lora_a, 1.0f / float(l.r), rng);
  } else if (init == "false") {
    fill_uniform(l.lora_a, 1.0f / std::sqrt(float(l.in_features)), rng);
    fill_uniform(l.lora_b, 1.0f / std::sqrt(float(l.r)), rng);
  } else {
    fail("init_lora_weights='{}' is not supported here (supported: true, gaussian, false, pissa)", init);
  }
}

// AdaLoRA (PEFT): A, B ~ N(0, 0.02²) and the singular values E = 0, so training starts from the base;
// "false" draws all three from N(0, 1) as PEFT's uninitialized parameters are.
void init_adalora(LoraLinear& l, const std::string& init, std::mt19937_64& rng) {
  l.add_singular_values();
  const bool raw = init == "false";
  fill_normal(l.lora_a, raw ? 1.0f : 0.02f, rng);
  fill_normal(l.lora_b, raw ? 1.0f : 0.02f, rng);
  if (raw) fill_normal(l.lora_e, 1.0f, rng);
}

// PiSSA: the adapter starts as the top-r singular triplets of W, scaled so that s·B·A equals them, and the
// frozen weight becomes the residual W − s·B·A (a copy: the base model is untouched):
//   W = U S Vᵀ,  A = diag(√(S_r/s)) V_rᵀ,  B = U_r diag(√(S_r/s)).
void init_pissa(LoraLinear& l, Tensor& weight) {
  const Svd d = svd(weight);
  const int64_t r = l.r, in = l.in_features, out = l.out_features;
  if (r > d.s.numel()) fail("{}: PiSSA rank {} exceeds the matrix rank bound {}", l.path, r, d.s.numel());
  for (int64_t k = 0; k < r; ++k) {
    const float root = std::sqrt(d.s.f32()[k] / l.scaling);
    for (int64_t i = 0; i < in; ++i) l.lora_a.f32()[k * in + i] = root * d.vt.f32()[k * in + i];
    for (int64_t o = 0; o < out; ++o) l.lora_b.f32()[o * r + k] = d.u.f32()[o * d.s.numel() + k] * root;
  }
  const std::shared_ptr<const QuantState> quant = weight.quant_ptr();
  weight = weight.to(DType::F32);
  matmul(mat(l.lora_b), false, mat(l.lora_a), false, mut_mat(weight), -l.scaling, 1.0f);  // W − s·B·A
  // A quantized (QLoRA) base keeps its memory: the residual is quantized again like the original.
  if (quant) weight = quantize(weight, QuantConfig{quant->type, quant->nested, quant->blocksize});
  l.pissa_a0 = l.lora_a.clone();
  l.pissa_b0 = l.lora_b.clone();
}

std::string peft_key(const std::string& module_path, const std::string& leaf) {
  return "base_model.model." + module_path + "." + leaf;
}

}  // namespace

namespace {

// Phi-3 has no q_proj..up_proj modules of its own: PEFT's default (q_proj, v_proj) means its attention input,
// qkv_proj; other names of the parts are refused, naming the fused module to target instead.
LoraConfig fused_targets(const LoraConfig& config, const ModelConfig& c) {
  if (!c.fused_linears || !config.target_modules_regex.empty()) return config;
  LoraConfig out = config;
  if (config.target_modules == LoraConfig().target_modules) {
    out.target_modules = {"qkv_proj"};
    return out;
  }
  for (const std::string& t : config.target_modules) {
    const std::string last = t.substr(t.rfind('.') == std::string::npos ? 0 : t.rfind('.') + 1);
    for (const char* part : {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"})
      if (last == part)
        fail("target module '{}': a {} model has no {} of its own; it fuses q|k|v into qkv_proj and gate|up into "
             "gate_up_proj (target those)", t, c.model_type, part);
  }
  return out;
}

// PEFT's "Target modules ... not found in the base model": a named target that no module of this model matches.
void check_targets_exist(const LoraConfig& config, const ModelConfig& c) {
  if (!config.target_modules_regex.empty()) return;
  std::vector<std::string> paths = {"model.embed_tokens", "lm_head"}, linears;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    for (int p = 0; p < kNumProj; ++p) paths.push_back(file_module_path(l, LinearSite(p), c));
  for (int p = 0; p < kNumProj; ++p) {
    const std::string path = file_module_path(0, LinearSite(p), c), name = path.substr(path.rfind('.') + 1);
    if (std::find(linears.begin(), linears.end(), name) == linears.end()) linears.push_back(name);
  }
  for (const std::string& t : config.target_modules) {
    if (t == "all-linear") continue;
    LoraConfig one;
    one.target_modules = {t};
    if (std::none_of(paths.begin(), paths.end(), [&](const std::string& p) { return one.targets(p); }))
      fail("target module '{}' matches no module of this {} model (its linear modules: {})", t, c.model_type,
           fmt::format("{}", fmt::join(linears, ", ")));
  }
}

}  // namespace

TrainableModel TrainableModel::lora(const Model& base, const LoraConfig& requested, uint64_t seed) {
  requested.validate();
  const LoraConfig config = fused_targets(requested, base.config);
  check_targets_exist(config, base.config);
  TrainableModel m(base);
  m.type_ = FinetuningType::Lora;
  m.config_ = config;
  m.rng_.seed(seed);
  const ModelConfig& c = base.config;

  for (const std::string& module : config.modules_to_save)
    if (module != "lm_head" && module != "embed_tokens" && module != "model.embed_tokens")
      fail("modules_to_save: unknown module '{}' (valid: lm_head, embed_tokens)", module);

  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    for (int p = 0; p < kNumProj; ++p) {
      LinearSlot& s = m.slots_[size_t(l)][p];
      const std::string path = fmt::format("model.layers.{}.{}", l, proj_module_path(Proj(p)));
      // What the config names: Phi-3's q, k and v are targeted (with one rank, one A) as qkv_proj, gate and up as
      // gate_up_proj.
      const std::string target = file_module_path(l, LinearSite(p), c);
      const Proj holder = lora_a_holder(Proj(p), c);
      // An AdaLoRA module whose every triplet was pruned keeps no adapter at all.
      if (config.targets(target) && config.rank_for(target) > 0) {
        if (target != path && config.init_lora_weights == "pissa")
          fail("PiSSA on {}'s fused module {} is not supported (target o_proj and down_proj alone, or use LoRA)",
               c.model_type, target);
        s.lora = std::make_unique<LoraLinear>(path, s.weight.dim(1), s.weight.dim(0), config.rank_for(target),
                                              config.scaling_for(target), config.lora_dropout, config.use_dora);
        if (target != path) s.lora->fused_path = target;
        if (holder != p) {  // one A (and AdaLoRA's E) for the fused module: shared storage; B of the part's rows
          const LoraLinear& first = *m.slots_[size_t(l)][holder].lora;
          s.lora->lora_a = first.lora_a;
          if (config.adalora) {
            s.lora->add_singular_values();
            s.lora->lora_e = first.lora_e;
            fill_normal(s.lora->lora_b, config.init_lora_weights == "false" ? 1.0f : 0.02f, m.rng_);
          } else if (config.init_lora_weights == "false") {
            fill_uniform(s.lora->lora_b, 1.0f / std::sqrt(float(s.lora->r)), m.rng_);
          }
        } else if (config.adalora) {
          init_adalora(*s.lora, config.init_lora_weights, m.rng_);
        } else if (config.init_lora_weights == "pissa") {
          init_pissa(*s.lora, s.weight);
        } else {
          init_lora(*s.lora, config.init_lora_weights, m.rng_);
        }
        if (config.use_dora) {  // m starts as ‖W + sBA‖: the adapted layer starts equal to the base
          const Tensor delta = s.lora->delta_weight();
          Tensor w = s.weight.to(DType::F32);
          for (int64_t i = 0; i < w.numel(); ++i) w.f32()[i] += delta.f32()[i];
          row_norms(w, s.lora->magnitude);
        }
      }
      const bool train_bias = config.bias == "all" || (config.bias == "lora_only" && s.lora);
      if (train_bias && !s.bias.empty()) m.make_trainable(s.bias, s.bias_grad);
    }

  if (config.targets("model.embed_tokens")) {
    auto e = std::make_unique<EmbeddingLora>();
    e->r = config.rank_for("model.embed_tokens");
    e->scaling = config.scaling_for("model.embed_tokens");
    // The reversed case: A [r, vocab] starts at zero, B [hidden, r] ~ N(0, 1), as PEFT does.
    e->lora_embedding_a = Tensor(DType::F32, {e->r, c.vocab_size});
    e->lora_embedding_b = Tensor(DType::F32, {c.hidden_size, e->r});
    e->grad_a = Tensor(DType::F32, {e->r, c.vocab_size});
    e->grad_b = Tensor(DType::F32, {c.hidden_size, e->r});
    if (config.init_lora_weights == "false")
      fill_normal(e->lora_embedding_a, 1.0f, m.rng_);
    fill_normal(e->lora_embedding_b, 1.0f, m.rng_);
    m.embed_lora_ = std::move(e);
  }
  if (config.targets("lm_head") && config.rank_for("lm_head") > 0) {
    if (config.use_dora) fail("DoRA on lm_head is not supported; leave lm_head out of target_modules");
    m.head_lora_ = std::make_unique<LoraLinear>("lm_head", c.hidden_size, c.vocab_size, config.rank_for("lm_head"),
                                                config.scaling_for("lm_head"), config.lora_dropout, false);
    if (config.adalora)
      init_adalora(*m.head_lora_, config.init_lora_weights, m.rng_);
    else if (config.init_lora_weights == "pissa")
      init_pissa(*m.head_lora_, m.weights_.lm_head);  // the residual head is a copy: a tied embedding stays as is
    else
      init_lora(*m.head_lora_, config.init_lora_weights, m.rng_);
  }
  for (const std::string& module : config.modules_to_save) {
    if (module == "lm_head") {
      m.make_trainable(m.weights_.lm_head, m.head_grad_);  // its own copy: untied from the embedding
      m.head_trainable_ = true;
    } else {
      m.make_trainable(m.weights_.tok_embeddings, m.embed_grad_);
      m.embed_trainable_ = true;
    }
  }
  m.register_params();
  return m;
}

TrainableModel TrainableModel::full(const Model& base) {
  TrainableModel m = freeze(base, base.config.num_hidden_layers);
  m.type_ = FinetuningType::Full;
  const bool tied = base.weights.lm_head.data() == base.weights.tok_embeddings.data();
  m.make_trainable(m.weights_.tok_embeddings, m.embed_grad_);
  m.embed_trainable_ = true;
  if (tied) {
    m.weights_.lm_head = m.weights_.tok_embeddings;  // still tied: one tensor, gradients from both uses
  } else {
    m.make_trainable(m.weights_.lm_head, m.head_grad_);
    m.head_trainable_ = true;
  }
  m.make_trainable(m.weights_.norm, m.final_norm_grad_);
  m.norms_trainable_ = true;
  m.params_.clear();
  m.register_params();
  return m;
}

void TrainableModel::make_layer_norms_trainable(int64_t l) {
  LayerWeights& w = weights_.layers[size_t(l)];
  auto& g = norm_grads_[size_t(l)];
  make_trainable(w.attn_norm, g[kAttnNorm]);
  make_trainable(w.ffn_norm, g[kFfnNorm]);
  if (!w.q_norm.empty()) {
    make_trainable(w.q_norm, g[kQNorm]);
    make_trainable(w.k_norm, g[kKNorm]);
  }
  if (!w.post_attn_norm.empty()) {
    make_trainable(w.post_attn_norm, g[kPostAttnNorm]);
    make_trainable(w.post_ffn_norm, g[kPostFfnNorm]);
  }
  layer_norms_trainable_[size_t(l)] = true;
}

TrainableModel TrainableModel::freeze(const Model& base, int64_t n_layers) {
  const int64_t L = base.config.num_hidden_layers;
  if (n_layers < 1 || n_layers > L) fail("freeze: the number of trainable layers must be in 1..{}, got {}", L, n_layers);
  TrainableModel m(base);
  m.type_ = FinetuningType::Freeze;
  for (int64_t l = L - n_layers; l < L; ++l) {
    for (LinearSlot& s : m.slots_[size_t(l)]) {
      m.make_trainable(s.weight, s.weight_grad);
      if (!s.bias.empty()) m.make_trainable(s.bias, s.bias_grad);
    }
    m.make_layer_norms_trainable(l);
  }
  m.register_params();
  return m;
}

void TrainableModel::register_params() {
  auto add = [&](std::string name, Tensor& v, Tensor& g, bool decay) { params_.push_back({std::move(name), &v, &g, decay}); };
  const bool adapter_names = type_ == FinetuningType::Lora;
  if (embed_lora_) {
    add(peft_key("model.embed_tokens", "lora_embedding_A"), embed_lora_->lora_embedding_a, embed_lora_->grad_a, true);
    add(peft_key("model.embed_tokens", "lora_embedding_B"), embed_lora_->lora_embedding_b, embed_lora_->grad_b, true);
  }
  if (embed_trainable_)
    add(adapter_names ? "base_model.model.model.embed_tokens.weight" : "model.embed_tokens.weight",
        weights_.tok_embeddings, embed_grad_, true);
  for (size_t l = 0; l < slots_.size(); ++l) {
    if (layer_norms_trainable_[l]) {
      LayerWeights& w = weights_.layers[l];
      auto& g = norm_grads_[l];
      // named as the family's config.json checkpoints name them (Gemma's values are the factors 1 + w)
      const std::pair<Tensor LayerWeights::*, NormWeight> norms[] = {
          {&LayerWeights::attn_norm, kAttnNorm}, {&LayerWeights::ffn_norm, kFfnNorm},
          {&LayerWeights::q_norm, kQNorm}, {&LayerWeights::k_norm, kKNorm},
          {&LayerWeights::post_attn_norm, kPostAttnNorm}, {&LayerWeights::post_ffn_norm, kPostFfnNorm}};
      for (const LayerTensorSpec& spec : layer_tensor_specs(base_.config))
        for (const auto& [member, which] : norms)
          if (spec.member == member) add(hf_layer_name(int64_t(l), spec), w.*member, g[which], false);
    }
    for (int p = 0; p < kNumProj; ++p) {
      LinearSlot& s = slots_[l][p];
      const std::string path = fmt::format("model.layers.{}.{}", l, proj_module_path(Proj(p)));
      const bool holds_a = lora_a_holder(Proj(p), base_.config) == p;  // (the parts of a fused module train its A)
      if (s.lora && s.lora->adalora()) {  // PEFT's AdaLoRA keys carry no ".weight"
        if (holds_a) add(peft_key(path, "lora_A"), s.lora->lora_a, s.lora->grad_a, true);
        add(peft_key(path, "lora_B"), s.lora->lora_b, s.lora->grad_b, true);
        if (holds_a) add(peft_key(path, "lora_E"), s.lora->lora_e, s.lora->grad_e, true);
      } else if (s.lora) {
        if (holds_a) add(peft_key(path, "lora_A.weight"), s.lora->lora_a, s.lora->grad_a, true);
        add(peft_key(path, "lora_B.weight"), s.lora->lora_b, s.lora->grad_b, true);
        if (s.lora->use_dora) add(peft_key(path, "lora_magnitude_vector"), s.lora->magnitude, s.lora->grad_magnitude, true);
      }
      if (!s.weight_grad.empty()) add(path + ".weight", s.weight, s.weight_grad, true);
      if (!s.bias_grad.empty()) add(adapter_names ? peft_key(path, "bias") : path + ".bias", s.bias, s.bias_grad, false);
    }
  }
  if (norms_trainable_) add("model.norm.weight", weights_.norm, final_norm_grad_, false);
  if (head_lora_ && head_lora_->adalora()) {
    add(peft_key("lm_head", "lora_A"), head_lora_->lora_a, head_lora_->grad_a, true);
    add(peft_key("lm_head", "lora_B"), head_lora_->lora_b, head_lora_->grad_b, true);
    add(peft_key("lm_head", "lora_E"), head_lora_->lora_e, head_lora_->grad_e, true);
  } else if (head_lora_) {
    add(peft_key("lm_head", "lora_A.weight"), head_lora_->lora_a, head_lora_->grad_a, true);
    add(peft_key("lm_head", "lora_B.weight"), head_lora_->lora_b, head_lora_->grad_b, true);
  }
  if (head_trainable_) add(adapter_names ? "base_model.model.lm_head.weight" : "lm_head.weight", weights_.lm_head, head_grad_, true);
}

std::vector<LoraLinear*> TrainableModel::lora_layers() {
  std::vector<LoraLinear*> out;
  for (auto& layer : slots_)
    for (LinearSlot& s : layer)
      if (s.lora) out.push_back(s.lora.get());
  if (head_lora_) out.push_back(head_lora_.get());
  return out;
}

void TrainableModel::zero_grad() {
  const int64_t count = int64_t(params_.size());
#pragma omp parallel for schedule(dynamic) if (trainable_parameter_count() > (1 << 16))
  for (int64_t i = 0; i < count; ++i) std::fill_n(params_[size_t(i)].grad->f32(), params_[size_t(i)].grad->numel(), 0.0f);
}

int64_t TrainableModel::trainable_parameter_count() const {
  int64_t n = 0;
  for (const Param& p : params_) n += p.value->numel();
  return n;
}

int64_t TrainableModel::all_parameter_count() const {
  if (type_ != FinetuningType::Lora) return base_.parameter_count();
  // PEFT counts the base plus what the adapter adds; a trained bias is a base parameter, not an addition.
  int64_t added = 0;
  for (const Param& p : params_)
    if (!p.name.ends_with(".bias")) added += p.value->numel();
  return base_.parameter_count() + added;
}

std::string TrainableModel::trainable_report() const {
  const int64_t t = trainable_parameter_count(), a = all_parameter_count();
  return fmt::format("trainable params: {} || all params: {} || trainable%: {:.4f}", t, a, 100.0 * double(t) / double(a));
}

}  // namespace lora
