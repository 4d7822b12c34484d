#pragma once
// Row order of the RoPE projections (wq, wk and their biases, and LoRA B factors of q/k).
//
// Hugging Face rotates element i of a head together with element i + d/2 ("rotate_half"); llama2.c
// and GGUF llama-arch files rotate pairs (2i, 2i+1). Within each head of size d:
//     half-split row  h*d + j*(d/2) + i   ==   interleaved row  h*d + 2*i + j      (j in {0,1}, i < d/2)
// This is the permutation convert_hf_to_gguf.py applies; these two functions are its two directions.
#include <cstdint>

#include "core/tensor.h"

namespace lora {

// `w` has n_heads * head_dim rows (first dimension; a 1-D bias counts each element as a row) of any
// dtype. Returns a new tensor; `w` is not modified.
Tensor rope_interleaved_to_half(const Tensor& w, int64_t n_heads);
Tensor rope_half_to_interleaved(const Tensor& w, int64_t n_heads);

}  // namespace lora
