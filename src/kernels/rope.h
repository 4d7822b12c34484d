#pragma once
// Rotary position embedding in Hugging Face "rotate_half" layout: within each head of size d, element
// i is rotated together with element i + d/2 by angle position * inv_freq[i]. With a partial rotary dimension
// (config.rope_dim() = R < d, Phi-4-mini's) the same happens within the first R values (i with i + R/2) and the
// rest pass unchanged.
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace lora {

// inv_freq[i] = theta^(-2i/d), adjusted by rope_scaling ("linear" divides by factor; "llama3"
// divides low frequencies by factor and blends the band between low_freq and high_freq wavelengths;
// "longrope" divides frequency i by short_factor[i], or by long_factor[i] when `context` positions reach past
// original_max_position_embeddings).
std::vector<double> rope_inv_freq(const ModelConfig& config, int64_t context = 0);
// LongRoPE's choice for a context of that many positions: the long factors beyond the original context.
bool rope_uses_long_factors(const ModelConfig& config, int64_t context);

// What rope_scaling divides each frequency by: theta^(-2i/d) / inv_freq[i] (1 without scaling). This is
// llama.cpp's rope_freqs tensor, how GGUF files carry llama3 scaling.
std::vector<double> rope_freq_divisors(const ModelConfig& config);

struct RopeTable {
  int64_t half = 0;          // rope_dim / 2
  int64_t max_positions = 0;
  bool long_factors = false;    // LongRoPE: built with the long factors
  std::vector<float> cos, sin;  // [max_positions, half], times LongRoPE's attention factor

  RopeTable() = default;
  // `context`: the positions the model will attend over (LongRoPE picks its factors by it); default max_positions.
  RopeTable(const ModelConfig& config, int64_t max_positions, int64_t context = -1);
};

// Rotates x [rows, n_heads * head_dim] into out (f32 or bf16, T = float or bf16; out may be x itself when
// T is float); row r is at position positions[r].
template <typename T>
void rope_forward(const float* x, T* out, const int32_t* positions, int64_t rows, int64_t n_heads, int64_t head_dim,
                  const RopeTable& table);

// The rotation is orthogonal, so the gradient is the same rotation by the opposite angle.
template <typename T>
void rope_backward(const float* dx, T* out, const int32_t* positions, int64_t rows, int64_t n_heads, int64_t head_dim,
                   const RopeTable& table);

// In place on f32.
inline void rope_forward(float* x, const int32_t* positions, int64_t rows, int64_t n_heads, int64_t head_dim,
                         const RopeTable& table) {
  rope_forward<float>(x, x, positions, rows, n_heads, head_dim, table);
}
inline void rope_backward(float* dx, const int32_t* positions, int64_t rows, int64_t n_heads, int64_t head_dim,
                          const RopeTable& table) {
  rope_backward<float>(dx, dx, positions, rows, n_heads, head_dim, table);
}

}  // namespace lora
