#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/matmul.h"
#include "core/parallel.h"
#include "kernels/simd.h"

namespace lora {

double token_nll(const float* logits, int64_t vocab, int32_t target) {
  float max_logit = logits[0];
  for (int64_t i = 1; i < vocab; ++i) max_logit = std::max(max_logit, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - max_logit);
  return std::log(sum) + max_logit - double(logits[target]);
}

namespace {

// row[i] <- e^(row[i] − m), returning Σ of them in double. Exact exp for f32 gradients; the single-precision
// one when the gradient is stored in bf16 anyway.
template <bool Fast>
double exp_shifted(float* row, int64_t n, float m) {
  double z = 0;
  int64_t i = 0;
#ifdef LORA_SIMD_AVX512
  const __m512 mv = _mm512_set1_ps(m);
  __m512d z0 = _mm512_setzero_pd(), z1 = _mm512_setzero_pd();
  for (; i < n; i += 16) {
    const __mmask16 k = simd::first_lanes(n - i);
    const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + i), mv);
    const __m512 e = _mm512_maskz_mov_ps(k, Fast ? simd::exp_fast(d) : simd::exp(d));
    _mm512_mask_storeu_ps(row + i, k, e);
    z0 = _mm512_add_pd(z0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    z1 = _mm512_add_pd(z1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
  }
  z = _mm512_reduce_add_pd(_mm512_add_pd(z0, z1));
#endif
  for (; i < n; ++i) z += row[i] = std::exp(row[i] - m);
  return z;
}

// dl[i] = s · e[i]
template <class D>
void scale_into(const float* e, int64_t n, float s, D* dl) {
  int64_t i = 0;
#ifdef LORA_SIMD_AVX512
  const __m512 sv = _mm512_set1_ps(s);
  for (; i < n; i += 16) {
    const __mmask16 k = simd::first_lanes(n - i);
    simd::store(dl + i, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, e + i), sv), k);
  }
#endif
  for (; i < n; ++i) simd::put(dl[i], e[i] * s);
}

// One chunk of rows: logits -> Σ NLL, and (if grad) dlogits = grad_scale · (softmax − onehot), zero on ignored
// rows, written in place over the logits: row r's D values start where its floats start (an f32 row is
// overwritten element by element; a bf16 row fills the first half of its bytes, each vector stored after it
// was loaded, never ahead of what is still to be read), so dlogits is a [rows, vocab] D matrix with a row
// stride of `vocab · sizeof(float) / sizeof(D)` elements.
// With a soft cap (Gemma 2's final_logit_softcapping) c > 0 the logits are capped first, l <- c·tanh(l / c), and
// the gradient is carried back through the cap (times 1 − tanh²).
template <class D>
void softmax_rows(float* logits, const int32_t* targets, int64_t rows, int64_t vocab, float grad_scale, bool grad,
                  float softcap, CrossEntropyResult& out) {
  double loss = 0;
  int64_t count = 0;
#pragma omp parallel for reduction(+ : loss, count) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* row = logits + r * vocab;
    D* drow = reinterpret_cast<D*>(row);
    const int32_t target = targets[r];
    if (target == kIgnoreIndex) {
      if (grad) std::fill(drow, drow + vocab, D(0));
      continue;
    }
    thread_local std::vector<float> tanh_buf;
    if (softcap > 0) {
      if (tanh_buf.size() < size_t(vocab)) tanh_buf.resize(size_t(vocab));
      for (int64_t i = 0; i < vocab; ++i) {
        tanh_buf[size_t(i)] = std::tanh(row[i] / softcap);
        row[i] = softcap * tanh_buf[size_t(i)];
      }
    }
    const float m = simd::max_of(row, vocab), target_logit = row[target];
    const double z = exp_shifted<std::is_same_v<D, bf16>>(row, vocab, m);
    loss += std::log(z) + double(m) - double(target_logit);
    ++count;
    if (grad && softcap > 0) {  // d/dl = grad_scale · (softmax − onehot) · (1 − tanh²), element by element
      const float s = float(double(grad_scale) / z);
      for (int64_t i = 0; i < vocab; ++i) {
        const float t = tanh_buf[size_t(i)];
        simd::put(drow[i], (row[i] * s - (i == target ? grad_scale : 0.0f)) * (1.0f - t * t));
      }
    } else if (grad) {
      const float s = float(double(grad_scale) / z);
      const float e_target = row[target];
      scale_into(row, vocab, s, drow);
      simd::put(drow[target], e_target * s - grad_scale);
    }
  }
  out.loss_sum += loss;
  out.count += count;
}

}  // namespace

void softcap_logits(float* logits, int64_t n, float softcap) {
  if (softcap <= 0) return;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) logits[i] = softcap * std::tanh(logits[i] / softcap);
}

CrossEntropyResult lm_head_cross_entropy(const float* h, const Tensor& lm_head, const int32_t* targets, int64_t n,
                                         int64_t chunk, float grad_scale, float* dh, float* dlm_head,
                                         const LowRankLogits* low_rank, std::vector<float>* workspace, float softcap) {
  const int64_t vocab = lm_head.dim(0), dim = lm_head.dim(1);
  const MatView W = mat(lm_head);
  for (int64_t r = 0; r < n; ++r)  // checked here: an exception must not leave an OpenMP region
    if (targets[r] != kIgnoreIndex && (targets[r] < 0 || targets[r] >= vocab))
      fail("target id {} at row {} is outside the vocabulary (size {})", targets[r], r, vocab);
  // dlogits in bf16 when the head is bf16 or quantized: the GEMMs it feeds round it to bf16 anyway.
  const bool bf16_grad = lm_head.dtype() != DType::F32;
  const int64_t max_rows = std::min(chunk, n);
  CrossEntropyResult result;
  std::vector<float> local;
  std::vector<float>& logits = workspace ? *workspace : local;
  // the chunk's logits, then the second half-sum of dh (below)
  if (logits.size() < size_t(max_rows * (vocab + dim))) logits.resize(size_t(max_rows * (vocab + dim)));
  float* dh_half = logits.data() + max_rows * vocab;
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    const MatView hc{h + r0 * dim, DType::F32, rows, dim, dim};
    const MutMatView lc{logits.data(), rows, vocab, vocab};
    matmul(hc, false, W, true, lc);
    const int64_t r = low_rank ? low_rank->b->dim(1) : 0;
    if (low_rank)
      matmul(MatView{low_rank->u + r0 * r, DType::F32, rows, r, r}, false, mat(*low_rank->b), true, lc, low_rank->scale,
             1.0f);
    if (bf16_grad)
      softmax_rows<bf16>(logits.data(), targets + r0, rows, vocab, grad_scale, dh != nullptr, softcap, result);
    else
      softmax_rows<float>(logits.data(), targets + r0, rows, vocab, grad_scale, dh != nullptr, softcap, result);
    if (!dh) continue;
    const MatView dl = bf16_grad ? MatView{logits.data(), DType::BF16, rows, vocab, 2 * vocab}
                                 : MatView{logits.data(), DType::F32, rows, vocab, vocab};
    // dh = dl · W as two half-sums over the vocabulary, side by side, then added: one long reduction per
    // thread runs ~1.5x faster than oneDNN's two-threaded split of this shape (measured on 49k and 152k
    // vocabularies).
    const int64_t half = vocab / 2;
    auto part = [&](int64_t v0, int64_t v1, float* out) {
      const MatView dl_part{static_cast<const char*>(dl.data) + v0 * int64_t(dtype_size(dl.dtype)), dl.dtype, rows,
                            v1 - v0, dl.stride};
      const MatView w_part{static_cast<const char*>(W.data) + v0 * dim * int64_t(dtype_size(W.dtype)), W.dtype, v1 - v0,
                           dim, dim};
      matmul(dl_part, false, w_part, false, MutMatView{out, rows, dim, dim});
    };
    if (W.quant || half == 0) {
      matmul(dl, false, W, false, MutMatView{dh + r0 * dim, rows, dim, dim});
    } else {
      run_side_by_side(2.0 * double(rows) * double(vocab) * double(dim), [&] { part(0, half, dh + r0 * dim); },
                       [&] { part(half, vocab, dh_half); });
      for (int64_t i = 0; i < rows * dim; ++i) dh[r0 * dim + i] += dh_half[i];
    }
    if (dlm_head) matmul(dl, true, hc, false, MutMatView{dlm_head, vocab, dim, dim}, 1.0f, 1.0f);
    if (low_rank) {
      const MatView uc{low_rank->u + r0 * r, DType::F32, rows, r, r};
      matmul(dl, false, mat(*low_rank->b), false, MutMatView{low_rank->du + r0 * r, rows, r, r}, low_rank->scale);
      matmul(dl, true, uc, false, MutMatView{low_rank->db, vocab, r, r}, low_rank->scale, 1.0f);
    }
  }
  return result;
}

}  // namespace lora
