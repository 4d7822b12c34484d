#include "kernels/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/attention_amx.h"
#include "kernels/attention_rows.h"
#include "kernels/simd.h"
#include "kernels/tile_gemm.h"

namespace lora {

namespace {

using namespace attention_rows;

constexpr int64_t kBlock = 64;  // queries and keys per tile: a 64 x 64 score tile and 64 x head_dim rows fit L1

// rows x cols of a strided matrix, transposed into out [cols][ld_out] as f32: K and V blocks as the B operand
// of Q·Kᵀ and dO·Vᵀ.
template <typename T>
void transpose_block(const T* src, int64_t ld_src, int64_t rows, int64_t cols, float* out, int64_t ld_out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * ld_out + r] = simd::to_f32(src[r * ld_src + c]);
}

// A rows x cols block as f32 rows the tile products read: the block itself when it is f32 (ld unchanged),
// else converted into buf (ld becomes cols).
const float* f32_block(const float* src, int64_t& ld, int64_t, int64_t, float*) { return src; }
const float* f32_block(const bf16* src, int64_t& ld, int64_t rows, int64_t cols, float* buf) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) buf[r * cols + c] = bf16_to_f32(src[r * ld + c]);
  ld = cols;
  return buf;
}

}  // namespace

template <typename E>
void attention_forward(const E* q, const E* keys, const E* values, E* out, int64_t T, int64_t pos0,
                       const AttentionShape& shape, float* stats, int64_t batch, int64_t kv_stride) {
  if constexpr (std::is_same_v<E, bf16>)
    if (attention_amx_usable(shape))
      return attention_forward_amx(q, keys, values, out, T, pos0, shape, stats, batch, kv_stride);
  constexpr bool exact = std::is_same_v<E, float>;
  const int64_t hd = shape.head_dim, q_dim = shape.q_dim(), kv_dim = shape.kv_dim(), H = shape.n_heads;
  const int64_t group = shape.n_heads / shape.n_kv_heads;
  const float scale = 1.0f / std::sqrt(float(hd));
  if (kv_stride == 0) kv_stride = pos0 + T;
  const int64_t n_qblocks = (T + kBlock - 1) / kBlock;
  const int64_t tasks = batch * H * n_qblocks;

#pragma omp parallel if (tasks > 1)
  {
    thread_local std::vector<float> kt_buf, s_buf, o_buf, q_buf, v_buf;
    float* kt = grown(kt_buf, size_t(hd * kBlock));
    float* s = grown(s_buf, size_t(kBlock * kBlock));
    float* o = grown(o_buf, size_t(kBlock * hd));
    float* q32 = grown(q_buf, size_t(kBlock * hd));
    float* v32 = grown(v_buf, size_t(kBlock * hd));
    float m[kBlock], l[kBlock];
    // The last query blocks see the most keys: they go first.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const auto [qb, b, h] = query_block_task(task, batch, H, n_qblocks);
      const int64_t q0 = qb * kBlock, nq = std::min(kBlock, T - q0);
      int64_t ldq = q_dim;
      const float* Q = f32_block(q + (b * T + q0) * q_dim + h * hd, ldq, nq, hd, q32);
      const E* K = keys + b * kv_stride * kv_dim + (h / group) * hd;
      const E* V = values + b * kv_stride * kv_dim + (h / group) * hd;
      const int64_t n_keys = pos0 + q0 + nq;
      std::fill(m, m + nq, -INFINITY);
      std::fill(l, l + nq, 0.0f);
      std::fill(o, o + nq * hd, 0.0f);
      for (int64_t k0 = first_key_block(pos0 + q0, shape.window, kBlock); k0 < n_keys; k0 += kBlock) {
        const int64_t nk = std::min(kBlock, n_keys - k0);
        transpose_block(K + k0 * kv_dim, kv_dim, nk, hd, kt, kBlock);
        tile_gemm(nq, nk, hd, Q, ldq, false, kt, kBlock, s, kBlock, scale, false);  // S = Q Kᵀ / √d
        if (shape.softcap > 0) softcap_tile(s, nq, nk, kBlock, shape.softcap, 1.0f, nullptr);
        for (int64_t r = 0; r < nq; ++r) {
          float* sr = s + r * kBlock;
          const VisibleKeys vis = visible_keys(pos0 + q0 + r, k0, nk, shape.window);
          if (vis.hi <= vis.lo) {
            std::fill(sr, sr + nk, 0.0f);
            continue;
          }
          const float m_new = std::max(m[r], simd::max_of(sr + vis.lo, vis.hi - vis.lo));
          const float corr = std::exp(m[r] - m_new);  // 0 on the first block (m = -inf)
          l[r] = l[r] * corr + exp_row(sr, sr, vis, nk, m_new, exact);
          if (corr != 1.0f) scale_row(o + r * hd, hd, corr);
          m[r] = m_new;
        }
        int64_t ldv = kv_dim;
        const float* Vb = f32_block(V + k0 * kv_dim, ldv, nk, hd, v32);
        tile_gemm(nq, hd, nk, s, kBlock, false, Vb, ldv, o, hd, 1.0f, true);  // O += P V
      }
      for (int64_t r = 0; r < nq; ++r) {
        const float inv = 1.0f / l[r];
        E* dst = out + (b * T + q0 + r) * q_dim + h * hd;
        for (int64_t i = 0; i < hd; ++i) simd::put(dst[i], o[r * hd + i] * inv);
        if (stats) {  // the softmax of the row is e^(s − m) / l
          stats[(b * H + h) * T + q0 + r] = m[r];
          stats[(batch + b) * H * T + h * T + q0 + r] = inv;
        }
      }
    }
  }
}

template <typename E>
void attention_backward(const float* dout, const E* q, const E* keys, const E* values, const E* out,
                        const float* stats, float* dq, float* dk, float* dv, int64_t T, const AttentionShape& shape,
                        int64_t batch) {
  if constexpr (std::is_same_v<E, bf16>)
    if (attention_amx_usable(shape))
      return attention_backward_amx(dout, q, keys, values, out, stats, dq, dk, dv, T, shape, batch);
  constexpr bool exact = std::is_same_v<E, float>;
  const int64_t hd = shape.head_dim, q_dim = shape.q_dim(), kv_dim = shape.kv_dim(), H = shape.n_heads;
  const int64_t KV = shape.n_kv_heads, group = H / KV;
  const float scale = 1.0f / std::sqrt(float(hd));
  const int64_t n_blocks = (T + kBlock - 1) / kBlock;
  const int64_t tasks = batch * KV * n_blocks;
  const int64_t rows = batch * T;

  // D_t = do_t · o_t per (sequence, head, query).
  std::vector<float> D(size_t(batch * H * T));
  DqPartials dq_sums(dq, rows * q_dim);

#pragma omp parallel
  {
    float* my_dq = dq_sums.mine();
#pragma omp for
    for (int64_t row = 0; row < rows; ++row) {
      const int64_t b = row / T, t = row % T;
      std::fill(dq + row * q_dim, dq + (row + 1) * q_dim, 0.0f);
      for (int64_t h = 0; h < H; ++h) D[size_t((b * H + h) * T + t)] = simd::dot(dout + row * q_dim + h * hd, out + row * q_dim + h * hd, hd);
    }

    thread_local std::vector<float> kt_buf, vt_buf, s_buf, dp_buf, dk_buf, dv_buf, q_buf, k_buf, slope_buf;
    float* slope = shape.softcap > 0 ? grown(slope_buf, size_t(kBlock * kBlock)) : nullptr;
    float* q32 = grown(q_buf, size_t(kBlock * hd));
    float* k32 = grown(k_buf, size_t(kBlock * hd));
    float* kt = grown(kt_buf, size_t(hd * kBlock));
    float* vt = grown(vt_buf, size_t(hd * kBlock));
    float* p = grown(s_buf, size_t(kBlock * kBlock));
    float* ds = grown(dp_buf, size_t(kBlock * kBlock));
    float* dk_acc = grown(dk_buf, size_t(kBlock * hd));
    float* dv_acc = grown(dv_buf, size_t(kBlock * hd));
    // The first key blocks are read by the most queries: they go first.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const auto [kb, b, g] = key_block_task(task, batch, KV);
      const int64_t k0 = kb * kBlock, nk = std::min(kBlock, T - k0);
      const E* Kj = keys + (b * T + k0) * kv_dim + g * hd;
      const E* Vj = values + (b * T + k0) * kv_dim + g * hd;
      transpose_block(Kj, kv_dim, nk, hd, kt, kBlock);
      transpose_block(Vj, kv_dim, nk, hd, vt, kBlock);
      int64_t ldk = kv_dim;
      const float* K32 = f32_block(Kj, ldk, nk, hd, k32);
      std::fill(dk_acc, dk_acc + nk * hd, 0.0f);
      std::fill(dv_acc, dv_acc + nk * hd, 0.0f);
      const int64_t last_qb = last_query_block(k0 + nk - 1, shape.window, n_blocks, kBlock);
      for (int64_t h = g * group; h < (g + 1) * group; ++h)
        for (int64_t qb = kb; qb <= last_qb; ++qb) {
          const int64_t q0 = qb * kBlock, nq = std::min(kBlock, T - q0);
          int64_t ldq = q_dim;
          const float* Qi = f32_block(q + (b * T + q0) * q_dim + h * hd, ldq, nq, hd, q32);
          const float* dOi = dout + (b * T + q0) * q_dim + h * hd;
          const float* max_i = stats + (b * H + h) * T + q0;
          const float* inv_sum_i = stats + (batch + b) * H * T + h * T + q0;
          const float* D_i = D.data() + (b * H + h) * T + q0;
          tile_gemm(nq, nk, hd, Qi, ldq, false, kt, kBlock, p, kBlock, scale, false);   // S = Q Kᵀ / √d
          if (slope) softcap_tile(p, nq, nk, kBlock, shape.softcap, 1.0f, slope);
          for (int64_t r = 0; r < nq; ++r) {
            exp_row(p + r * kBlock, p + r * kBlock, visible_keys(q0 + r, k0, nk, shape.window), nk, max_i[r], exact);
            scale_row(p + r * kBlock, nk, inv_sum_i[r]);  // P, exactly as the forward formed it
          }
          tile_gemm(nq, nk, hd, dOi, q_dim, false, vt, kBlock, ds, kBlock, 1.0f, false);  // dP = dO Vᵀ
          for (int64_t r = 0; r < nq; ++r) {
            softmax_grad_row(p + r * kBlock, ds + r * kBlock, ds + r * kBlock, nk, D_i[r], scale);  // dS
            if (slope) times_row(ds + r * kBlock, slope + r * kBlock, nk);  // through the soft cap
          }
          tile_gemm(nk, hd, nq, p, kBlock, true, dOi, q_dim, dv_acc, hd, 1.0f, true);   // dV += Pᵀ dO
          tile_gemm(nk, hd, nq, ds, kBlock, true, Qi, ldq, dk_acc, hd, 1.0f, true);     // dK += dSᵀ Q
          tile_gemm(nq, hd, nk, ds, kBlock, false, K32, ldk, my_dq + (b * T + q0) * q_dim + h * hd, q_dim, 1.0f,
                    true);                                                              // dQ += dS K
        }
      for (int64_t j = 0; j < nk; ++j) {
        std::copy(dk_acc + j * hd, dk_acc + (j + 1) * hd, dk + (b * T + k0 + j) * kv_dim + g * hd);
        std::copy(dv_acc + j * hd, dv_acc + (j + 1) * hd, dv + (b * T + k0 + j) * kv_dim + g * hd);
      }
    }
    dq_sums.add_copies();  // (after the implicit barrier of the loop above: every copy is complete)
  }
}

template void attention_forward<float>(const float*, const float*, const float*, float*, int64_t, int64_t,
                                        const AttentionShape&, float*, int64_t, int64_t);
template void attention_forward<bf16>(const bf16*, const bf16*, const bf16*, bf16*, int64_t, int64_t,
                                       const AttentionShape&, float*, int64_t, int64_t);
template void attention_backward<float>(const float*, const float*, const float*, const float*, const float*,
                                         const float*, float*, float*, float*, int64_t, const AttentionShape&, int64_t);
template void attention_backward<bf16>(const float*, const bf16*, const bf16*, const bf16*, const bf16*, const float*,
                                        float*, float*, float*, int64_t, const AttentionShape&, int64_t);

}  // namespace lora
