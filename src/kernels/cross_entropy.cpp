#include "kernels/cross_entropy.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/matmul.h"

namespace lora {

double token_nll(const float* logits, int64_t vocab, int32_t target) {
  float max_logit = logits[0];
  for (int64_t i = 1; i < vocab; ++i) max_logit = std::max(max_logit, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - max_logit);
  return std::log(sum) + max_logit - double(logits[target]);
}

CrossEntropyResult lm_head_cross_entropy(const float* h, const Tensor& lm_head, const int32_t* targets, int64_t n,
                                         int64_t chunk, float grad_scale, float* dh, float* dlm_head,
                                         const LowRankLogits* low_rank) {
  const int64_t vocab = lm_head.dim(0), dim = lm_head.dim(1);
  const MatView W = mat(lm_head);
  for (int64_t r = 0; r < n; ++r)  // checked here: an exception must not leave an OpenMP region
    if (targets[r] != kIgnoreIndex && (targets[r] < 0 || targets[r] >= vocab))
      fail("target id {} at row {} is outside the vocabulary (size {})", targets[r], r, vocab);
  CrossEntropyResult result;
  std::vector<float> logits(size_t(std::min(chunk, n) * vocab));
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    const MatView hc{h + r0 * dim, DType::F32, rows, dim, dim};
    const MutMatView lc{logits.data(), rows, vocab, vocab};
    matmul(hc, false, W, true, lc);
    const int64_t r = low_rank ? low_rank->b->dim(1) : 0;
    if (low_rank)
      matmul(MatView{low_rank->u + r0 * r, DType::F32, rows, r, r}, false, mat(*low_rank->b), true, lc, low_rank->scale,
             1.0f);

    double chunk_loss = 0;
    int64_t chunk_count = 0;
#pragma omp parallel for reduction(+ : chunk_loss, chunk_count)
    for (int64_t r = 0; r < rows; ++r) {
      float* row = logits.data() + r * vocab;
      const int32_t target = targets[r0 + r];
      if (target == kIgnoreIndex) {
        if (dh) std::fill(row, row + vocab, 0.0f);
        continue;
      }
      chunk_loss += token_nll(row, vocab, target);
      ++chunk_count;
      if (dh) {  // row becomes dlogits = grad_scale · (softmax − onehot)
        float max_logit = row[0];
        for (int64_t i = 1; i < vocab; ++i) max_logit = std::max(max_logit, row[i]);
        double z = 0;
        for (int64_t i = 0; i < vocab; ++i) z += row[i] = std::exp(row[i] - max_logit);
        const float inv = float(1.0 / z);
        for (int64_t i = 0; i < vocab; ++i) row[i] *= inv * grad_scale;
        row[target] -= grad_scale;
      }
    }
    result.loss_sum += chunk_loss;
    result.count += chunk_count;
    if (dh) {
      const MatView dl{logits.data(), DType::F32, rows, vocab, vocab};
      matmul(dl, false, W, false, MutMatView{dh + r0 * dim, rows, dim, dim});
      if (dlm_head) matmul(dl, true, hc, false, MutMatView{dlm_head, vocab, dim, dim}, 1.0f, 1.0f);
      if (low_rank) {
        const MatView uc{low_rank->u + r0 * r, DType::F32, rows, r, r};
        matmul(dl, false, mat(*low_rank->b), false, MutMatView{low_rank->du + r0 * r, rows, r, r}, low_rank->scale);
        matmul(dl, true, uc, false, MutMatView{low_rank->db, vocab, r, r}, low_rank->scale, 1.0f);
      }
    }
  }
  return result;
}

}  // namespace lora
