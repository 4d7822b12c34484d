#pragma once
// LoRA adapters as GGUF files in the layout llama.cpp loads with --lora (what its
// convert_lora_to_gguf.py writes; SPEC.md 3.3):
//
//   general.type = "adapter", general.architecture = the base's ("llama", "qwen2"),
//   adapter.type = "lora", adapter.lora.alpha (f32): llama.cpp scales by user_scale · alpha / r, with r
//   read from each tensor (alpha = 0 means scale 1).
//   <base tensor>.lora_a  ne = [n_in, r]   (A, row-major [r, n_in], as PEFT's lora_A)
//   <base tensor>.lora_b  ne = [r, n_out]  (B, row-major [n_out, r])
//   e.g. blk.0.attn_q.weight.lora_a; token_embd.weight.lora_a is Aᵀ (ne = [r, vocab]) with
//   lora_b ne = [r, hidden], as llama.cpp's embedding path reads them.
//
// For the llama architecture the q/k lora_b rows are in GGUF's interleaved RoPE order (the permutation
// convert_hf_to_gguf.py applies to q_proj/k_proj); adapters here keep Hugging Face order in memory.
#include <string>

#include "adapters/adapter.h"

namespace lora {

// Writes `adapter` (checked against `base` first) for llama.cpp, atomically, its tensors in `dtype` (F32, F16
// or BF16). One alpha serves every tensor: where a module's scaling is not alpha / r (rsLoRA,
// alpha_pattern) the difference is folded into its B. Refused with a clear error: DoRA magnitudes,
// trained biases, modules_to_save (llama.cpp's LoRA has none of these) and a LoRA on a tied lm_head
// (llama.cpp's model then has no output.weight).
void write_gguf_adapter(const Adapter& adapter, const Model& base, const std::string& path, DType dtype = DType::F32);

// Reads a GGUF LoRA adapter. With `base` the llama-architecture q/k lora_b rows are put back into
// Hugging Face order (the model's head counts are needed for that); without it they stay in the file's
// order, which is enough to describe the adapter but not to apply it. FormatError names the file and
// the tensor on anything malformed.
Adapter read_gguf_adapter(const std::string& path, const ModelConfig* base);

}  // namespace lora
