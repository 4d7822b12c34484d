// ggml's block formats: the reference decoders (one value at a time, in ggml's order of operations) and
// the reference quantizers llama-quantize runs without an importance matrix. The vectorized decoders are
// in ggml_quant_kernels.cpp. Compiled with -ffp-contract=off: a fused multiply-add would round once where
// ggml rounds twice.
#include "core/ggml_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/quant.h"

namespace lora {

namespace {

constexpr int64_t QK = 32;    // elements of a Q4_0 ... Q8_0 / IQ4_NL block
constexpr int64_t QK_K = 256; // elements of a K-quant / IQ4_XS super-block

constexpr int8_t kIQ4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

inline float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}
inline void put_half(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}
// fp32 -> fp16 -> fp32, as a quantizer sees the scale it stored.
inline float as_stored(float v) { return f16_to_f32(f32_to_f16(v)); }

// ggml's nearest_int: round half to even through the float adder (|x| < 2^22).
inline int nearest_int(float x) {
  const float v = x + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// The 6-bit scale and min of sub-block j of a Q4_K / Q5_K block.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// ---------------------------------------------------------------- reference decoders, one block each

void decode_q4_0(const uint8_t* b, float* y) {
  const float d = half(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = float((b[2 + j] & 0x0F) - 8) * d;
    y[j + 16] = float((b[2 + j] >> 4) - 8) * d;
  }
}

void decode_q4_1(const uint8_t* b, float* y) {
  const float d = half(b), m = half(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = float(b[4 + j] & 0x0F) * d + m;
    y[j + 16] = float(b[4 + j] >> 4) * d + m;
  }
}

void decode_q5_0(const uint8_t* b, float* y) {
  const float d = half(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
    y[j] = float(((qs[j] & 0x0F) | h0) - 16) * d;
    y[j + 16] = float(((qs[j] >> 4) | h1) - 16) * d;
  }
}

void decode_q5_1(const uint8_t* b, float* y) {
  const float d = half(b), m = half(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
    y[j] = float((qs[j] & 0x0F) | h0) * d + m;
    y[j + 16] = float((qs[j] >> 4) | h1) * d + m;
  }
}

void decode_q8_0(const uint8_t* b, float* y) {
  const float d = half(b);
  const auto* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = float(qs[j]) * d;
}

void decode_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* q = b + 16;
  const float d = half(b + 80), dmin = half(b + 82);
  int is = 0;
  for (int n = 0; n < 256; n += 128, q += 32)
    for (int shift = 0; shift < 8; shift += 2)
      for (int half16 = 0; half16 < 2; ++half16) {
        const uint8_t sc = scales[is++];
        const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l + 16 * half16] >> shift) & 3) - ml;
      }
}

// The sixteen 6-bit Q3_K scales, unpacked (before the −32).
void q3_k_scales(const uint8_t* packed, int8_t* out) {
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
    const int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = int8_t(low | (high << 4));
  }
}

void decode_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  int8_t scales[16];
  q3_k_scales(b + 96, scales);
  const float d_all = half(b + 108);
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < 256; n += 128, q += 32)
    for (int shift = 0; shift < 8; shift += 2, m = uint8_t(m << 1))
      for (int half16 = 0; half16 < 2; ++half16) {
        const float dl = d_all * float(scales[is++] - 32);
        for (int l = 16 * half16; l < 16 * half16 + 16; ++l)
          *y++ = dl * float(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
      }
}

void decode_q4_k(const uint8_t* b, float* y) {
  const float d = half(b), dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int j = 0, is = 0; j < 256; j += 64, q += 32, is += 2) {
    uint8_t sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * float(sc), m2 = dmin * float(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
  }
}

void decode_q5_k(const uint8_t* b, float* y) {
  const float d = half(b), dmin = half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < 256; j += 64, ql += 32, is += 2, u1 = uint8_t(u1 << 2), u2 = uint8_t(u2 << 2)) {
    uint8_t sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * float(sc), m2 = dmin * float(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
  }
}

void decode_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half(b + 208);
  for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[is]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
}

void decode_iq4_nl(const uint8_t* b, float* y) {
  const float d = half(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float(kIQ4Values[b[2 + j] & 0xF]);
    y[j + 16] = d * float(kIQ4Values[b[2 + j] >> 4]);
  }
}

void decode_iq4_xs(const uint8_t* b, float* y) {
  const float d = half(b);
  uint16_t scales_h;
  std::memcpy(&scales_h, b + 2, 2);
  const uint8_t* scales_l = b + 4;
  const uint8_t* qs = b + 8;
  for (int ib = 0; ib < 8; ++ib, y += 32, qs += 16) {
    const int ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((scales_h >> (2 * ib)) & 3) << 4);
    const float dl = d * float(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[j] = dl * float(kIQ4Values[qs[j] & 0xF]);
      y[j + 16] = dl * float(kIQ4Values[qs[j] >> 4]);
    }
  }
}

using BlockDecoder = void (*)(const uint8_t*, float*);

BlockDecoder reference_decoder(DType t) {
  switch (t) {
    case DType::Q4_0: return decode_q4_0;
    case DType::Q4_1: return decode_q4_1;
    case DType::Q5_0: return decode_q5_0;
    case DType::Q5_1: return decode_q5_1;
    case DType::Q8_0: return decode_q8_0;
    case DType::Q2_K: return decode_q2_k;
    case DType::Q3_K: return decode_q3_k;
    case DType::Q4_K: return decode_q4_k;
    case DType::Q5_K: return decode_q5_k;
    case DType::Q6_K: return decode_q6_k;
    case DType::IQ4_NL: return decode_iq4_nl;
    case DType::IQ4_XS: return decode_iq4_xs;
    default: fail("{} is not a ggml block type", dtype_name(t));
  }
}

// ---------------------------------------------------------------- quantizers (ggml's *_ref)

// The value of largest magnitude (the first of equals), signed: symmetric types map it onto their most
// negative code.
float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j)
    if (amax < std::fabs(x[j])) { amax = std::fabs(x[j]); max = x[j]; }
  return max;
}

std::pair<float, float> min_max(const float* x, int n) {
  float min = x[0], max = x[0];
  for (int j = 1; j < n; ++j) { min = std::min(min, x[j]); max = std::max(max, x[j]); }
  return {min, max};
}

void quantize_q4_0(const float* x, uint8_t* b) {
  const float d = signed_absmax(x, 32) / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, int(int8_t(x[j] * id + 8.5f))), hi = std::min(15, int(int8_t(x[j + 16] * id + 8.5f)));
    b[2 + j] = uint8_t(lo | (hi << 4));
  }
}

void quantize_q4_1(const float* x, uint8_t* b) {
  const auto [min, max] = min_max(x, 32);
  const float d = (max - min) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  put_half(b + 2, min);
  for (int j = 0; j < 16; ++j) {
    const int lo = std::min(15, int(int8_t((x[j] - min) * id + 0.5f)));
    const int hi = std::min(15, int(int8_t((x[j + 16] - min) * id + 0.5f)));
    b[4 + j] = uint8_t(lo | (hi << 4));
  }
}

// Q5_0 and Q5_1 share the packing: four low bits in qs, the fifth in qh.
void pack_5bit(const uint8_t* l, uint8_t* qh_out, uint8_t* qs) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = uint8_t((l[j] & 0x0F) | ((l[j + 16] & 0x0F) << 4));
    qh |= uint32_t((l[j] & 0x10u) >> 4) << j;
    qh |= uint32_t((l[j + 16] & 0x10u) >> 4) << (j + 16);
  }
  std::memcpy(qh_out, &qh, 4);
}

void quantize_q5_0(const float* x, uint8_t* b) {
  const float d = signed_absmax(x, 32) / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  uint8_t l[32];
  for (int j = 0; j < 32; ++j) l[j] = uint8_t(std::min(31, int(int8_t(x[j] * id + 16.5f))));
  pack_5bit(l, b + 2, b + 6);
}

void quantize_q5_1(const float* x, uint8_t* b) {
  const auto [min, max] = min_max(x, 32);
  const float d = (max - min) / 31.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  put_half(b + 2, min);
  uint8_t l[32];
  for (int j = 0; j < 32; ++j) l[j] = uint8_t((x[j] - min) * id + 0.5f);
  pack_5bit(l, b + 4, b + 8);
}

void quantize_q8_0(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  for (int j = 0; j < 32; ++j) b[2 + j] = uint8_t(int8_t(std::round(x[j] * id)));
}

constexpr float kGroupMaxEps = 1e-15f;

// Symmetric codes L in [0, 2·nmax) for a group, searching the scale for the least weighted error
// (ggml's make_qx_quants with rmse_type 1; weights x² when qw is null).
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  const float max = signed_absmax(x, n), amax = std::fabs(max);
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t(0));
    return 0.0f;
  }
  auto weight = [&](int i) { return qw ? qw[i] : x[i] * x[i]; };
  float iscale = -float(nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
    L[i] = int8_t(l + nmax);
    const float w = weight(i);
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(float(nmax) + 0.1f * float(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
      const float w = weight(i);
      sumlx += w * x[i] * float(l);
      suml2 += w * float(l) * float(l);
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = int8_t(nmax + std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i]))));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Symmetric 3-bit codes with the iterative refinement of ggml's make_q3_quants (do_rmse).
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
  const float max = signed_absmax(x, n), amax = std::fabs(max);
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t(0));
    return 0.0f;
  }
  const float iscale = -float(nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
    L[i] = int8_t(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * float(L[i]);
      if (slx > 0) {
        float sl2 = suml2 - w * float(L[i]) * float(L[i]);
        int new_l = std::max(-nmax, std::min(nmax - 1, nearest_int(x[i] * sl2 / slx)));
        if (new_l != L[i]) {
          slx += w * x[i] * float(new_l);
          sl2 += w * float(new_l) * float(new_l);
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = int8_t(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Asymmetric codes L in [0, nmax] with a min: ggml's make_qkx2_quants (a grid search over the scale, the
// best (scale, min) by weighted least squares). Returns the scale; *the_min gets −min (>= 0).
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(L, L + n, uint8_t(0));
    *the_min = -min;
    return 0.0f;
  }
  float iscale = float(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = uint8_t(std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min)))));
    float diff = scale * float(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * float(is) + float(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
      Laux[i] = uint8_t(l);
      const float w = weights[i];
      sum_l += w * float(l);
      sum_l2 += w * float(l) * float(l);
      sum_xl += w * float(l) * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * float(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        std::copy(Laux, Laux + n, L);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Packs 2-bit codes: byte l of each 32-byte group holds elements l, l+32, l+64, l+96 of its 128.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < 256; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

void quantize_q2_k(const float* x, uint8_t* b) {
  uint8_t L[256], Laux[16];
  float weights[16], mins[16], scales[16];
  uint8_t* sc = b;
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float q4scale = 15.0f;
  if (max_scale > 0) {
    const float iscale = q4scale / max_scale;
    for (int j = 0; j < 16; ++j) sc[j] = uint8_t(nearest_int(iscale * scales[j]));
    put_half(b + 80, max_scale / q4scale);
  } else {
    std::fill(sc, sc + 16, uint8_t(0));
    put_half(b + 80, 0.0f);
  }
  if (max_min > 0) {
    const float iscale = q4scale / max_min;
    for (int j = 0; j < 16; ++j) sc[j] = uint8_t(sc[j] | (nearest_int(iscale * mins[j]) << 4));
    put_half(b + 82, max_min / q4scale);
  } else {
    put_half(b + 82, 0.0f);
  }
  const float d_all = half(b + 80), m_all = half(b + 82);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * float(sc[j] & 0xF);
    if (d == 0.0f) continue;
    const float dm = m_all * float(sc[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = uint8_t(std::max(0, std::min(3, nearest_int((x[16 * j + ii] + dm) / d))));
  }
  pack_2bit(L, b + 16);
}

void quantize_q3_k(const float* x, uint8_t* b) {
  int8_t L[256];
  float scales[16];
  uint8_t* hmask = b;
  uint8_t* packed = b + 96;
  float max_scale = 0, amax = 0;
  for (int j = 0; j < 16; ++j) {
    scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
    if (std::fabs(scales[j]) > amax) { amax = std::fabs(scales[j]); max_scale = scales[j]; }
  }
  std::memset(packed, 0, 12);
  if (max_scale != 0.0f) {
    const float iscale = -32.0f / max_scale;
    for (int j = 0; j < 16; ++j) {
      int l = std::max(-32, std::min(31, int(int8_t(nearest_int(iscale * scales[j]))))) + 32;
      if (j < 8) packed[j] = uint8_t(l & 0xF);
      else packed[j - 8] = uint8_t(packed[j - 8] | ((l & 0xF) << 4));
      l >>= 4;
      packed[j % 4 + 8] = uint8_t(packed[j % 4 + 8] | (l << (2 * (j / 4))));
    }
    put_half(b + 108, 1 / iscale);
  } else {
    put_half(b + 108, 0.0f);
  }
  int8_t sc[16];
  q3_k_scales(packed, sc);
  const float d_all = half(b + 108);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * float(sc[j] - 32);
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = int8_t(std::max(-4, std::min(3, nearest_int(x[16 * j + ii] / d))) + 4);
  }
  std::memset(hmask, 0, 32);
  uint8_t codes[256];
  for (int j = 0, m = 0, hm = 1; j < 256; ++j) {
    int l = L[j];
    if (l > 3) {
      hmask[m] = uint8_t(hmask[m] | hm);
      l -= 4;
    }
    codes[j] = uint8_t(l);
    if (++m == 32) { m = 0; hm <<= 1; }
  }
  pack_2bit(codes, b + 32);
}

// The 6-bit scales and mins of a Q4_K / Q5_K block, packed as get_scale_min_k4 reads them.
void pack_scale_min_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* q) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      q[j] = ls[j];
      q[j + 4] = lm[j];
    } else {
      q[j + 4] = uint8_t((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      q[j - 4] = uint8_t(q[j - 4] | ((ls[j] >> 4) << 6));
      q[j] = uint8_t(q[j] | ((lm[j] >> 4) << 6));
    }
  }
}

// Q4_K (nmax 15) and Q5_K (nmax 31): eight sub-blocks of 32 with their own scale and min, then one fp16
// scale for the 6-bit scales and one for the mins. Writes d, dmin, scales; returns the codes in L.
void quantize_k_scales_mins(const float* x, int nmax, float rmin, float rdelta, int nstep, uint8_t* b, uint8_t* L) {
  uint8_t Laux[32];
  float weights[32], mins[8], scales[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f, inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  uint8_t ls[8], lm[8];
  for (int j = 0; j < 8; ++j) {
    ls[j] = std::min<uint8_t>(63, uint8_t(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<uint8_t>(63, uint8_t(nearest_int(inv_min * mins[j])));
  }
  pack_scale_min_k4(ls, lm, b + 4);
  put_half(b, max_scale / 63.0f);
  put_half(b + 2, max_min / 63.0f);
  const float d_all = half(b), m_all = half(b + 2);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    scale_min_k4(j, b + 4, sc, m);
    const float d = d_all * float(sc);
    if (d == 0.0f) continue;
    const float dm = m_all * float(m);
    for (int ii = 0; ii < 32; ++ii) L[32 * j + ii] = uint8_t(std::max(0, std::min(nmax, nearest_int((x[32 * j + ii] + dm) / d))));
  }
}

void quantize_q4_k(const float* x, uint8_t* b) {
  uint8_t L[256];
  quantize_k_scales_mins(x, 15, -1.0f, 0.1f, 20, b, L);
  uint8_t* q = b + 16;
  for (int j = 0; j < 256; j += 64, q += 32)
    for (int l = 0; l < 32; ++l) q[l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
}

void quantize_q5_k(const float* x, uint8_t* b) {
  uint8_t L[256];
  quantize_k_scales_mins(x, 31, -0.5f, 0.1f, 15, b, L);
  uint8_t* qh = b + 16;
  uint8_t* ql = b + 48;
  std::memset(qh, 0, 32);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < 256; n += 64, ql += 32, m1 = uint8_t(m1 << 2), m2 = uint8_t(m2 << 2))
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j], l2 = L[n + j + 32];
      if (l1 > 15) { l1 -= 16; qh[j] = uint8_t(qh[j] | m1); }
      if (l2 > 15) { l2 -= 16; qh[j] = uint8_t(qh[j] | m2); }
      ql[j] = uint8_t(l1 | (l2 << 4));
    }
}

void quantize_q6_k(const float* x, uint8_t* b) {
  int8_t L[256];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, nullptr);
    if (std::fabs(scales[ib]) > max_abs_scale) { max_abs_scale = std::fabs(scales[ib]); max_scale = scales[ib]; }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(b, 0, 210);
    return;
  }
  auto* sc = reinterpret_cast<int8_t*>(b + 192);
  const float iscale = -128.0f / max_scale;
  put_half(b + 208, 1 / iscale);
  for (int ib = 0; ib < 16; ++ib) sc[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
  const float d_all = half(b + 208);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * float(sc[j]);
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = int8_t(std::max(-32, std::min(31, nearest_int(x[16 * j + ii] / d))) + 32);
  }
  uint8_t* ql = b;
  uint8_t* qh = b + 128;
  for (int j = 0; j < 256; j += 128, ql += 64, qh += 32)
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
      ql[l] = uint8_t(q1 | (q3 << 4));
      ql[l + 32] = uint8_t(q2 | (q4 << 4));
      qh[l] = uint8_t((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
    }
}

// The nearest of the sorted non-linear values (ties to the upper one).
int best_index_iq4(float x) {
  if (x <= kIQ4Values[0]) return 0;
  if (x >= kIQ4Values[15]) return 15;
  int ml = 0, mu = 15;
  while (mu - ml > 1) {
    const int mav = (ml + mu) / 2;
    if (x < kIQ4Values[mav]) mu = mav;
    else ml = mav;
  }
  return x - kIQ4Values[mu - 1] < kIQ4Values[mu] - x ? mu - 1 : mu;
}

// IQ4_NL (one block of 32: super = 32) and IQ4_XS (super = 256, eight blocks with 6-bit scales):
// ggml's quantize_row_iq4_nl_impl with ntry = 7 and no importance weights. Writes d at `dh`, the codes
// at `q4`, and for IQ4_XS the scales at scales_h / scales_l.
void quantize_iq4(int super, const float* x, uint8_t* dh, uint8_t* q4, uint8_t* scales_h, uint8_t* scales_l) {
  constexpr int block = 32, ntry = 7;
  uint8_t L[256];
  float scales[8], weight[32];
  std::memset(q4, 0, size_t(super / 2));
  put_half(dh, 0.0f);
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < super / block; ++ib) {
    const float* xb = x + ib * block;
    uint8_t* Lb = L + ib * block;
    for (int j = 0; j < block; ++j) weight[j] = xb[j] * xb[j];
    float amax = 0, max = 0;
    for (int j = 0; j < block; ++j)
      if (std::fabs(xb[j]) > amax) { amax = std::fabs(xb[j]); max = xb[j]; }
    if (amax < kGroupMaxEps) {
      scales[ib] = 0;
      std::fill(Lb, Lb + block, uint8_t(0));
      continue;
    }
    float d = -max / float(kIQ4Values[0]);
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < block; ++j) {
      const int l = best_index_iq4(id * xb[j]);
      Lb[j] = uint8_t(l);
      const float q = kIQ4Values[l], w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
      id = (float(itry) + float(kIQ4Values[0])) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < block; ++j) {
        const float q = kIQ4Values[best_index_iq4(id * xb[j])], w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    if (std::fabs(d) > amax_scale) { amax_scale = std::fabs(d); max_scale = d; }
  }
  if (super / block > 1) {
    uint16_t sh = 0;
    const float d = -max_scale / 32;
    put_half(dh, d);
    const float id = d != 0.0f ? 1 / d : 0.0f;
    for (int ib = 0; ib < super / block; ++ib) {
      int l = std::max(-32, std::min(31, nearest_int(id * scales[ib])));
      const float dl = d * float(l), idl = dl != 0.0f ? 1 / dl : 0.0f;
      for (int j = 0; j < block; ++j) L[ib * block + j] = uint8_t(best_index_iq4(idl * x[ib * block + j]));
      l += 32;
      if (ib % 2 == 0) scales_l[ib / 2] = uint8_t(l & 0xF);
      else scales_l[ib / 2] = uint8_t(scales_l[ib / 2] | ((l & 0xF) << 4));
      sh = uint16_t(sh | ((l >> 4) << (2 * (ib % 8))));
    }
    std::memcpy(scales_h, &sh, 2);
  } else {
    put_half(dh, scales[0]);
    const float id = scales[0] != 0.0f ? 1 / scales[0] : 0.0f;
    for (int j = 0; j < super; ++j) L[j] = uint8_t(best_index_iq4(id * x[j]));
  }
  for (int i = 0; i < super / 32; ++i)
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = uint8_t(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

void quantize_iq4_nl(const float* x, uint8_t* b) { quantize_iq4(32, x, b, b + 2, nullptr, nullptr); }
void quantize_iq4_xs(const float* x, uint8_t* b) { quantize_iq4(256, x, b, b + 8, b + 2, b + 4); }

using BlockQuantizer = void (*)(const float*, uint8_t*);

BlockQuantizer quantizer(DType t) {
  switch (t) {
    case DType::Q4_0: return quantize_q4_0;
    case DType::Q4_1: return quantize_q4_1;
    case DType::Q5_0: return quantize_q5_0;
    case DType::Q5_1: return quantize_q5_1;
    case DType::Q8_0: return quantize_q8_0;
    case DType::Q2_K: return quantize_q2_k;
    case DType::Q3_K: return quantize_q3_k;
    case DType::Q4_K: return quantize_q4_k;
    case DType::Q5_K: return quantize_q5_k;
    case DType::Q6_K: return quantize_q6_k;
    case DType::IQ4_NL: return quantize_iq4_nl;
    case DType::IQ4_XS: return quantize_iq4_xs;
    default: fail("{} is not a ggml block type", dtype_name(t));
  }
}

// Byte offsets of a block's fp16 scales (d, and dmin or m where the type has one).
std::vector<size_t> scale_offsets(DType t) {
  switch (t) {
    case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: return {0, 2};
    case DType::Q2_K: return {80, 82};
    case DType::Q3_K: return {108};
    case DType::Q6_K: return {208};
    default: return {0};
  }
}

}  // namespace

GGMLBlock ggml_block(DType t) {
  switch (t) {
    case DType::Q4_0: return {QK, 18, 2};
    case DType::Q4_1: return {QK, 20, 3};
    case DType::Q5_0: return {QK, 22, 6};
    case DType::Q5_1: return {QK, 24, 7};
    case DType::Q8_0: return {QK, 34, 8};
    case DType::Q2_K: return {QK_K, 84, 10};
    case DType::Q3_K: return {QK_K, 110, 11};
    case DType::Q4_K: return {QK_K, 144, 12};
    case DType::Q5_K: return {QK_K, 176, 13};
    case DType::Q6_K: return {QK_K, 210, 14};
    case DType::IQ4_NL: return {QK, 18, 20};
    case DType::IQ4_XS: return {QK_K, 136, 23};
    default: fail("{} is not a ggml block type", dtype_name(t));
  }
}

std::optional<DType> ggml_block_dtype(uint32_t ggml_type) {
  for (DType t = DType::Q4_0; t <= DType::IQ4_XS; t = DType(uint8_t(t) + 1))
    if (ggml_block(t).ggml_type == ggml_type) return t;
  return std::nullopt;
}

void ggml_dequantize_reference(DType t, const void* blocks, int64_t n, float* out) {
  const GGMLBlock g = ggml_block(t);
  if (n % g.elements != 0) fail("dequantize {}: {} values are not whole blocks of {}", dtype_name(t), n, g.elements);
  const BlockDecoder decode = reference_decoder(t);
  const auto* b = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < n / g.elements; ++i) decode(b + size_t(i) * g.bytes, out + i * g.elements);
}

void ggml_quantize(DType t, const float* x, int64_t n, void* blocks) {
  const GGMLBlock g = ggml_block(t);
  if (n % g.elements != 0) fail("quantize to {}: {} values are not whole blocks of {}", dtype_name(t), n, g.elements);
  const BlockQuantizer quantize = quantizer(t);
  auto* b = static_cast<uint8_t*>(blocks);
  const int64_t nb = n / g.elements;
  // A block must hold finite values, and values its fp16 scales can reach: a value beyond them (say
  // 1e30) would turn a scale infinite, or its squared weight infinite, and come back as garbage.
  int64_t bad_block = -1;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * g.elements;
    float amax = 0.0f;
    bool finite = true;
    for (int64_t j = 0; j < g.elements; ++j) {
      finite = finite && std::isfinite(xb[j]);
      amax = std::max(amax, std::fabs(xb[j]));
    }
    uint8_t* out = b + size_t(i) * g.bytes;
    bool ok = finite;
    if (ok) {
      quantize(xb, out);
      if (amax > 1.0f) {  // below that no scale can overflow
        float y[256];
        ggml_dequantize_reference(t, out, g.elements, y);
        float back = 0.0f;
        for (int64_t j = 0; j < g.elements; ++j) back = std::isfinite(y[j]) ? std::max(back, std::fabs(y[j])) : INFINITY;
        ok = std::isfinite(back) && back > 0.5f * amax;
      }
    }
    if (!ok) {
#pragma omp critical
      if (bad_block < 0 || i < bad_block) bad_block = i;
    }
  }
  if (bad_block >= 0) {
    const float* xb = x + bad_block * g.elements;
    bool finite = true;
    for (int64_t j = 0; j < g.elements; ++j) finite = finite && std::isfinite(xb[j]);
    if (!finite) fail("quantize to {}: the values hold NaN or infinity (block {})", dtype_name(t), bad_block);
    fail("quantize to {}: the values of block {} are too large for its fp16 scales", dtype_name(t), bad_block);
  }
}

Tensor ggml_quantize_tensor(const Tensor& w, DType t) {
  const GGMLBlock g = ggml_block(t);
  if (w.ndim() < 1 || w.dim(-1) % g.elements != 0)
    fail("cannot quantize a {} tensor to {}: rows must be a multiple of {} values", w.shape_str(), dtype_name(t), g.elements);
  const Tensor f = w.dtype() == DType::F32 ? w : w.to(DType::F32);
  auto storage = aligned_alloc_shared(dtype_nbytes(t, w.numel()));
  ggml_quantize(t, f.f32(), w.numel(), storage.get());
  return ggml_tensor_view(t, w.shape(), storage.get(), storage);
}

Tensor ggml_tensor_view(DType t, std::vector<int64_t> shape, const void* blocks, std::shared_ptr<void> owner) {
  auto s = std::make_shared<QuantState>();
  s->type = t;
  s->blocksize = ggml_block(t).elements;
  return Tensor(t, std::move(shape), const_cast<void*>(blocks), std::move(owner), s);
}

std::optional<int64_t> ggml_first_nonfinite_block(DType t, const void* blocks, int64_t n_blocks) {
  const GGMLBlock g = ggml_block(t);
  const std::vector<size_t> offsets = scale_offsets(t);
  const auto* b = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < n_blocks; ++i)
    for (size_t o : offsets) {
      uint16_t h;
      std::memcpy(&h, b + size_t(i) * g.bytes + o, 2);
      if ((h & 0x7c00u) == 0x7c00u) return i;  // exponent all ones: inf or NaN
    }
  return std::nullopt;
}

}  // namespace lora
