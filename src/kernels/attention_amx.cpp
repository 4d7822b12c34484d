#include "kernels/attention_amx.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/amx_gemm.h"
#include "kernels/attention_rows.h"
#include "kernels/simd.h"

namespace lora {

namespace {

using namespace attention_rows;

constexpr int64_t kBlock = 64;  // queries and keys per tile, as in the AVX-512 form

int64_t round32(int64_t n) { return (n + 31) / 32 * 32; }

// Forward, one score row: p = e^(scale·s − m) over the visible keys, 0 up to n_pad, written as bf16 (the A
// operand of P·V); returns Σ p (of the f32 values).
float exp_row_to_bf16(const float* s, bf16* p, VisibleKeys vis, int64_t n_pad, float scale, float m) {
#ifdef LORA_SIMD_AVX512
  const __m512 sc = _mm512_set1_ps(scale), sh = _mm512_set1_ps(m);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n_pad; j += 16) {
    const __mmask16 keep = lanes_in(vis.lo, vis.hi, j);
    const __m512 e = _mm512_maskz_mov_ps(keep, simd::exp_fast(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(keep, s + j), sc, sh)));
    simd::store(p + j, e);
    sum = _mm512_add_ps(sum, e);
  }
  return _mm512_reduce_add_ps(sum);
#else
  float sum = 0;
  for (int64_t j = 0; j < n_pad; ++j) {
    const float e = j >= vis.lo && j < vis.hi ? std::exp(s[j] * scale - m) : 0.0f;
    p[j] = f32_to_bf16(e);
    sum += e;
  }
  return sum;
#endif
}

// Backward, one row: p = e^(scale·s − m) / l over the visible keys (the forward's probabilities), then
// dp <- dS = p ⊙ (dp − D) · scale; both over n values (0 past the visible ones).
void probabilities_and_grad_row(float* s, float* dp, VisibleKeys vis, int64_t n, float scale, float m, float inv_l,
                                float d) {
#ifdef LORA_SIMD_AVX512
  const __m512 sc = _mm512_set1_ps(scale), sh = _mm512_set1_ps(m), il = _mm512_set1_ps(inv_l), dd = _mm512_set1_ps(d);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 keep = lanes_in(vis.lo, vis.hi, j), in = simd::first_lanes(n - j);
    const __m512 e = _mm512_maskz_mov_ps(keep, simd::exp_fast(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(keep, s + j), sc, sh)));
    const __m512 pv = _mm512_mul_ps(e, il);
    _mm512_mask_storeu_ps(s + j, in, pv);
    const __m512 g = _mm512_mul_ps(_mm512_mul_ps(pv, _mm512_sub_ps(_mm512_maskz_loadu_ps(in, dp + j), dd)), sc);
    _mm512_mask_storeu_ps(dp + j, in, g);
  }
#else
  for (int64_t j = 0; j < n; ++j) {
    s[j] = j >= vis.lo && j < vis.hi ? std::exp(s[j] * scale - m) * inv_l : 0.0f;
    dp[j] = s[j] * (dp[j] - d) * scale;
  }
#endif
}

}  // namespace

bool attention_amx_usable(const AttentionShape& shape) { return shape.head_dim <= 256 && bf16_tiles_fast(); }

void attention_forward_amx(const bf16* q, const bf16* keys, const bf16* values, bf16* out, int64_t T, int64_t pos0,
                           const AttentionShape& shape, float* stats, int64_t batch, int64_t kv_stride) {
  const int64_t hd = shape.head_dim, q_dim = shape.q_dim(), kv_dim = shape.kv_dim(), H = shape.n_heads;
  const int64_t KV = shape.n_kv_heads, group = H / KV;
  const float scale = 1.0f / std::sqrt(float(hd));
  if (kv_stride == 0) kv_stride = pos0 + T;
  const int64_t hp = round32(hd), S = pos0 + T, nkb = (S + kBlock - 1) / kBlock, nqb = (T + kBlock - 1) / kBlock;
  const int64_t tile = hp * kBlock;  // bf16 elements of a packed 64 x head_dim block
  // Kᵀ and V of every key block of every (sequence, kv head), packed once for all query blocks that read them.
  // (kept by the calling thread between calls: no page faults of fresh buffers every layer)
  // Thread-local to the calling thread: the parallel region below reads them through these pointers.
  static thread_local std::vector<bf16> kt_buf_all, v_buf_all;
  bf16* const kt_all = grown(kt_buf_all, size_t(batch * KV * nkb * tile));
  bf16* const v_all = grown(v_buf_all, size_t(batch * KV * nkb * tile));
  const int64_t pack_tasks = batch * KV * nkb, tasks = batch * H * nqb;

#pragma omp parallel
  {
    amx_configure();
#pragma omp for schedule(static)
    for (int64_t t = 0; t < pack_tasks; ++t) {
      const int64_t kb = t % nkb, g = (t / nkb) % KV, b = t / (nkb * KV);
      const int64_t k0 = kb * kBlock, nk = std::min(kBlock, S - k0);
      const int64_t at = (b * kv_stride + k0) * kv_dim + g * hd;
      pack_b(keys + at, kv_dim, true, hd, nk, hp, kBlock, kt_all + t * tile);    // B = Kᵀ
      pack_b(values + at, kv_dim, false, nk, hd, kBlock, hp, v_all + t * tile);  // B = V
    }

    thread_local std::vector<bf16> qa_buf, pa_buf;
    thread_local std::vector<float> s_buf, o_buf;
    bf16* qa = grown(qa_buf, size_t(tile));
    bf16* pa = grown(pa_buf, size_t(kBlock * kBlock));
    float* s = grown(s_buf, size_t(kBlock * kBlock));
    float* o = grown(o_buf, size_t(kBlock * hp));
    float m[kBlock], l[kBlock];
    // The last query blocks see the most keys: they go first.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const auto [qb, b, h] = query_block_task(task, batch, H, nqb);
      const int64_t g = h / group;
      const int64_t q0 = qb * kBlock, nq = std::min(kBlock, T - q0);
      pack_a(q + (b * T + q0) * q_dim + h * hd, q_dim, false, nq, hd, kBlock, hp, qa);
      const int64_t n_keys = pos0 + q0 + nq;
      std::fill(pa + nq * kBlock, pa + kBlock * kBlock, bf16(0));  // rows past the block's queries
      std::fill(m, m + nq, -INFINITY);
      std::fill(l, l + nq, 0.0f);
      std::fill(o, o + kBlock * hp, 0.0f);
      for (int64_t k0 = first_key_block(pos0 + q0, shape.window, kBlock); k0 < n_keys; k0 += kBlock) {
        const int64_t nk = std::min(kBlock, n_keys - k0), packed = (b * KV + g) * nkb + k0 / kBlock;
        amx_gemm(kBlock, kBlock, hp, qa, hp, kt_all + packed * tile, s, kBlock, false);  // S = Q Kᵀ
        if (shape.softcap > 0) softcap_tile(s, nq, nk, kBlock, shape.softcap, scale, nullptr);
        for (int64_t r = 0; r < nq; ++r) {
          const float* sr = s + r * kBlock;
          bf16* pr = pa + r * kBlock;  // P in bf16, its padding zero
          const VisibleKeys vis = visible_keys(pos0 + q0 + r, k0, nk, shape.window);
          if (vis.hi <= vis.lo) {
            std::fill(pr, pr + kBlock, bf16(0));
            continue;
          }
          const float m_new = std::max(m[r], simd::max_of(sr + vis.lo, vis.hi - vis.lo) * scale);  // scale > 0
          const float corr = std::exp(m[r] - m_new);
          l[r] = l[r] * corr + exp_row_to_bf16(sr, pr, vis, kBlock, scale, m_new);
          if (corr != 1.0f) scale_row(o + r * hp, hd, corr);
          m[r] = m_new;
        }
        amx_gemm(kBlock, hp, kBlock, pa, kBlock, v_all + packed * tile, o, hp, true);  // O += P V
      }
      for (int64_t r = 0; r < nq; ++r) {
        const float inv = 1.0f / l[r];
        bf16* dst = out + (b * T + q0 + r) * q_dim + h * hd;
        for (int64_t i = 0; i < hd; ++i) dst[i] = f32_to_bf16(o[r * hp + i] * inv);
        if (stats) {
          stats[(b * H + h) * T + q0 + r] = m[r];
          stats[(batch + b) * H * T + h * T + q0 + r] = inv;
        }
      }
    }
  }
}

void attention_backward_amx(const float* dout, const bf16* q, const bf16* keys, const bf16* values, const bf16* out,
                            const float* stats, float* dq, float* dk, float* dv, int64_t T, const AttentionShape& shape,
                            int64_t batch) {
  const int64_t hd = shape.head_dim, q_dim = shape.q_dim(), kv_dim = shape.kv_dim(), H = shape.n_heads;
  const int64_t KV = shape.n_kv_heads, group = H / KV;
  const float scale = 1.0f / std::sqrt(float(hd));
  const int64_t hp = round32(hd), nb = (T + kBlock - 1) / kBlock, rows = batch * T;
  const int64_t tile = hp * kBlock, q_tiles = batch * H * nb, tasks = batch * KV * nb;

  std::vector<float> D(size_t(batch * H * T));  // do_t · o_t
  // Q, Qᵀ, dO, dOᵀ of every query block, as A operands, packed once.
  // (thread-local to the calling thread, read in the parallel region through these pointers)
  static thread_local std::vector<bf16> qa_buf_all, qt_buf_all, da_buf_all, dt_buf_all;
  bf16* const qa_all = grown(qa_buf_all, size_t(q_tiles * tile));
  bf16* const qt_all = grown(qt_buf_all, size_t(q_tiles * tile));
  bf16* const da_all = grown(da_buf_all, size_t(q_tiles * tile));
  bf16* const dt_all = grown(dt_buf_all, size_t(q_tiles * tile));
  DqPartials dq_sums(dq, rows * q_dim);

#pragma omp parallel
  {
    float* my_dq = dq_sums.mine();
    amx_configure();
#pragma omp for
    for (int64_t row = 0; row < rows; ++row) {
      const int64_t b = row / T, t = row % T;
      std::fill(dq + row * q_dim, dq + (row + 1) * q_dim, 0.0f);
      // D from dO rounded to bf16, as dP = dO Vᵀ reads it: the two terms of dP − D then cancel exactly
      // where they should (one visible key: dS = 0).
      for (int64_t h = 0; h < H; ++h) {
        const float* d_o = dout + row * q_dim + h * hd;
        const bf16* o = out + row * q_dim + h * hd;
        float acc = 0;
        for (int64_t i = 0; i < hd; ++i) acc += bf16_to_f32(f32_to_bf16(d_o[i])) * bf16_to_f32(o[i]);
        D[size_t((b * H + h) * T + t)] = acc;
      }
    }
#pragma omp for schedule(static)
    for (int64_t t = 0; t < q_tiles; ++t) {
      const int64_t qb = t % nb, h = (t / nb) % H, b = t / (nb * H);
      const int64_t q0 = qb * kBlock, nq = std::min(kBlock, T - q0);
      const bf16* Q = q + (b * T + q0) * q_dim + h * hd;
      const float* dO = dout + (b * T + q0) * q_dim + h * hd;
      pack_a(Q, q_dim, false, nq, hd, kBlock, hp, qa_all + t * tile);
      pack_a(Q, q_dim, true, hd, nq, hp, kBlock, qt_all + t * tile);
      pack_a(dO, q_dim, false, nq, hd, kBlock, hp, da_all + t * tile);
      pack_a(dO, q_dim, true, hd, nq, hp, kBlock, dt_all + t * tile);
    }

    thread_local std::vector<bf16> kt_buf, vt_buf, k_buf, pb_buf, dsa_buf;
    thread_local std::vector<float> p_buf, ds_buf, dkt_buf, dvt_buf, dqb_buf, slope_buf;
    float* slope = shape.softcap > 0 ? grown(slope_buf, size_t(kBlock * kBlock)) : nullptr;
    bf16* kt = grown(kt_buf, size_t(tile));
    bf16* vt = grown(vt_buf, size_t(tile));
    bf16* kp = grown(k_buf, size_t(tile));
    bf16* pb = grown(pb_buf, size_t(kBlock * kBlock));
    bf16* dsa = grown(dsa_buf, size_t(kBlock * kBlock));
    float* p = grown(p_buf, size_t(kBlock * kBlock));
    float* ds = grown(ds_buf, size_t(kBlock * kBlock));
    float* dkt = grown(dkt_buf, size_t(tile));  // dKᵀ [head_dim, keys] of the key block
    float* dvt = grown(dvt_buf, size_t(tile));
    float* dq_blk = grown(dqb_buf, size_t(tile));
    // The first key blocks are read by the most queries: they go first.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const auto [kb, b, g] = key_block_task(task, batch, KV);
      const int64_t k0 = kb * kBlock, nk = std::min(kBlock, T - k0);
      const bf16* Kj = keys + (b * T + k0) * kv_dim + g * hd;
      const bf16* Vj = values + (b * T + k0) * kv_dim + g * hd;
      pack_b(Kj, kv_dim, true, hd, nk, hp, kBlock, kt);   // B = Kᵀ for S = Q Kᵀ
      pack_b(Vj, kv_dim, true, hd, nk, hp, kBlock, vt);   // B = Vᵀ for dP = dO Vᵀ
      pack_b(Kj, kv_dim, false, nk, hd, kBlock, hp, kp);  // B = K for dQ = dS K
      std::fill(dkt, dkt + tile, 0.0f);
      std::fill(dvt, dvt + tile, 0.0f);
      const int64_t last_qb = last_query_block(k0 + nk - 1, shape.window, nb, kBlock);
      for (int64_t h = g * group; h < (g + 1) * group; ++h)
        for (int64_t qb = kb; qb <= last_qb; ++qb) {
          const int64_t q0 = qb * kBlock, nq = std::min(kBlock, T - q0), t = (b * H + h) * nb + qb;
          const float* max_i = stats + (b * H + h) * T + q0;
          const float* inv_sum_i = stats + (batch + b) * H * T + h * T + q0;
          const float* D_i = D.data() + (b * H + h) * T + q0;
          amx_gemm(kBlock, kBlock, hp, qa_all + t * tile, hp, kt, p, kBlock, false);   // S = Q Kᵀ
          amx_gemm(kBlock, kBlock, hp, da_all + t * tile, hp, vt, ds, kBlock, false);  // dP = dO Vᵀ
          if (slope) softcap_tile(p, nq, nk, kBlock, shape.softcap, scale, slope);
          for (int64_t r = 0; r < nq; ++r) {  // P as the forward formed it, and dS
            probabilities_and_grad_row(p + r * kBlock, ds + r * kBlock, visible_keys(q0 + r, k0, nk, shape.window), nk,
                                       scale, max_i[r], inv_sum_i[r], D_i[r]);
            if (slope) times_row(ds + r * kBlock, slope + r * kBlock, nk);  // through the soft cap
          }
          pack_b(p, kBlock, false, nq, nk, kBlock, kBlock, pb);
          amx_gemm(hp, kBlock, kBlock, dt_all + t * tile, kBlock, pb, dvt, kBlock, true);  // dVᵀ += dOᵀ P
          pack_b(ds, kBlock, false, nq, nk, kBlock, kBlock, pb);
          amx_gemm(hp, kBlock, kBlock, qt_all + t * tile, kBlock, pb, dkt, kBlock, true);  // dKᵀ += Qᵀ dS
          pack_a(ds, kBlock, false, nq, nk, kBlock, kBlock, dsa);
          amx_gemm(kBlock, hp, kBlock, dsa, kBlock, kp, dq_blk, hp, false);  // dS K
          float* dq_rows = my_dq + (b * T + q0) * q_dim + h * hd;
          for (int64_t r = 0; r < nq; ++r)
            for (int64_t i = 0; i < hd; ++i) dq_rows[r * q_dim + i] += dq_blk[r * hp + i];
        }
      for (int64_t j = 0; j < nk; ++j) {
        float* dk_row = dk + (b * T + k0 + j) * kv_dim + g * hd;
        float* dv_row = dv + (b * T + k0 + j) * kv_dim + g * hd;
        for (int64_t i = 0; i < hd; ++i) {
          dk_row[i] = dkt[i * kBlock + j];
          dv_row[i] = dvt[i * kBlock + j];
        }
      }
    }
    dq_sums.add_copies();  // (after the implicit barrier of the loop above: every copy is complete)
  }
}

}  // namespace lora
