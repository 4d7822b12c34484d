#include "kernels/rope.h"

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "kernels/simd.h"

namespace lora {

bool rope_uses_long_factors(const ModelConfig& config, int64_t context) {
  return config.rope_scaling.type == "longrope" && context > config.rope_scaling.original_max_position_embeddings;
}

std::vector<double> rope_inv_freq(const ModelConfig& config, int64_t context) {
  const int64_t d = config.rope_dim();
  std::vector<double> inv_freq(size_t(d / 2));
  for (int64_t i = 0; i < d / 2; ++i) inv_freq[i] = std::pow(double(config.rope_theta), -double(2 * i) / double(d));

  const RopeScaling& s = config.rope_scaling;
  if (s.type.empty() || s.type == "default") return inv_freq;
  if (s.type == "longrope") {
    const std::vector<float>& factor = rope_uses_long_factors(config, context) ? s.long_factor : s.short_factor;
    if (factor.size() != inv_freq.size()) fail("longrope needs head_dim/2 = {} factors, found {}", inv_freq.size(), factor.size());
    for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] /= double(factor[i]);
    return inv_freq;
  }
  if (s.type == "linear") {
    for (double& f : inv_freq) f /= s.factor;
    return inv_freq;
  }
  if (s.type == "llama3") {
    const double old_context = double(s.original_max_position_embeddings);
    const double low_freq_wavelen = old_context / s.low_freq_factor;
    const double high_freq_wavelen = old_context / s.high_freq_factor;
    for (double& f : inv_freq) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen < high_freq_wavelen) continue;  // high frequencies: unchanged
      if (wavelen > low_freq_wavelen) {           // low frequencies: interpolated by factor
        f /= s.factor;
        continue;
      }
      const double smooth = (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      f = (1.0 - smooth) * f / s.factor + smooth * f;
    }
    return inv_freq;
  }
  fail("unsupported rope_scaling type '{}' (supported: linear, llama3, longrope)", s.type);
}

std::vector<double> rope_freq_divisors(const ModelConfig& config) {
  std::vector<double> d = rope_inv_freq(config);
  for (size_t i = 0; i < d.size(); ++i)
    d[i] = std::pow(double(config.rope_theta), -double(2 * i) / double(config.rope_dim())) / d[i];
  return d;
}

RopeTable::RopeTable(const ModelConfig& config, int64_t max_pos, int64_t context)
    : half(config.rope_dim() / 2), max_positions(max_pos) {
  if (context < 0) context = max_pos;
  long_factors = rope_uses_long_factors(config, context);
  const std::vector<double> inv_freq = rope_inv_freq(config, context);
  // (LongRoPE scales cos and sin: q·k then carries the square of it, as in transformers and llama.cpp)
  const double a = config.rope_scaling.type == "longrope" ? double(config.rope_scaling.attention_factor) : 1.0;
  cos.resize(size_t(max_pos * half));
  sin.resize(size_t(max_pos * half));
  for (int64_t p = 0; p < max_pos; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const double angle = double(p) * inv_freq[i];
      cos[p * half + i] = float(a * std::cos(angle));
      sin[p * half + i] = float(a * std::sin(angle));
    }
}

namespace {

// direction +1 rotates by +angle (forward), -1 by -angle (backward).
template <typename T>
void rotate(const float* x, T* out, const int32_t* positions, int64_t rows, int64_t n_heads, int64_t head_dim,
            const RopeTable& table, float direction) {
  const int64_t half = table.half;  // (a partial rotary dimension leaves the values past 2·half as they are)
  const bool copy_rest = 2 * half < head_dim && static_cast<const void*>(x) != static_cast<const void*>(out);
#pragma omp parallel for if (rows * n_heads * head_dim > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t pos = positions[r];
    if (pos < 0 || pos >= table.max_positions) continue;  // callers check; never read out of the table
    const float* c = table.cos.data() + pos * half;
    const float* s = table.sin.data() + pos * half;
    for (int64_t h = 0; h < n_heads; ++h) {
      const float* v = x + r * n_heads * head_dim + h * head_dim;
      T* o = out + r * n_heads * head_dim + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = v[i], x2 = v[i + half], sn = direction * s[i];
        simd::put(o[i], x1 * c[i] - x2 * sn);
        simd::put(o[i + half], x2 * c[i] + x1 * sn);
      }
      if (copy_rest)
        for (int64_t i = 2 * half; i < head_dim; ++i) simd::put(o[i], v[i]);
    }
  }
}

}  // namespace

template <typename T>
void rope_forward(const float* x, T* out, const int32_t* positions, int64_t rows, int64_t n_heads, int64_t head_dim,
                  const RopeTable& table) {
  rotate(x, out, positions, rows, n_heads, head_dim, table, 1.0f);
}

template <typename T>
void rope_backward(const float* dx, T* out, const int32_t* positions, int64_t rows, int64_t n_heads, int64_t head_dim,
                   const RopeTable& table) {
  rotate(dx, out, positions, rows, n_heads, head_dim, table, -1.0f);
}

template void rope_forward<float>(const float*, float*, const int32_t*, int64_t, int64_t, int64_t, const RopeTable&);
template void rope_forward<bf16>(const float*, bf16*, const int32_t*, int64_t, int64_t, int64_t, const RopeTable&);
template void rope_backward<float>(const float*, float*, const int32_t*, int64_t, int64_t, int64_t, const RopeTable&);
template void rope_backward<bf16>(const float*, bf16*, const int32_t*, int64_t, int64_t, int64_t, const RopeTable&);

}  // namespace lora
