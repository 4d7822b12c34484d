// Quantization to NF4 / FP4 / INT8_ROW and the scalar dequantization; the vectorized bf16 decoding
// used by the matrix multiply is in quant_kernels.cpp.
#include "core/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/ggml_quant.h"

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define LORA_QUANT_AVX512 1
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's AVX-512 headers, see quant_kernels.cpp
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace lora {

namespace {

// bitsandbytes' NF4 values (the quantiles of N(0, 1) normalized to [-1, 1], with an exact zero).
constexpr std::array<float, 16> kNF4 = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};

// FP4 (1 sign, 2 exponent, 1 mantissa bits, bias 3): the magnitude of code c & 7 is
// {0, 0.0625, 8, 12, 4, 6, 2, 3}[c & 7] / 12, and bit 3 is the sign.
constexpr float kFP4Magnitude[8] = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f};

// The thresholds of bitsandbytes' quantization kernels. For NF4 they are the fp32 midpoints between
// consecutive code values (checked in the tests); for FP4 they are the kernel's decimal constants on
// |x|, which sit a few ulps off the true midpoints, so they are taken as written.
constexpr float kFP4Thresholds[7] = {0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f,
                                     0.4166667f,  0.583333f,  0.8333333f};
// FP4 magnitude codes in increasing order of value.
constexpr uint8_t kFP4Ascending[8] = {0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011};

std::array<float, 15> nf4_thresholds() {
  std::array<float, 15> t{};
  for (int i = 0; i < 15; ++i) t[i] = (kNF4[i] + kNF4[i + 1]) / 2.0f;
  return t;
}

// Index of the first threshold >= x, i.e. how many thresholds x exceeds; NaN exceeds none (code 0, as
// in bitsandbytes' comparison tree for the NaN an all-zero block produces).
template <size_t N> inline uint8_t count_below(const float (&thr)[N], float x) {
  uint8_t c = 0;
  for (size_t i = 0; i < N; ++i) c += thr[i] < x;
  return c;
}

inline uint8_t quantize_nf4(const float (&thr)[15], float scaled) { return count_below(thr, scaled); }

inline uint8_t quantize_fp4(float scaled) {
  const uint8_t sign = scaled < 0.0f ? 0b1000 : 0;
  return uint8_t(sign | kFP4Ascending[count_below(kFP4Thresholds, std::fabs(scaled))]);
}

// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for each exponent
// i = 0..6, the means of 2^i + 1 evenly spaced points in [0.1, 1] scaled by ±10^(i-6), then 0 and 1, sorted.
// The values are as PyTorch computes them (fp32 torch.linspace, whose last bits no closed formula
// reproduces), written out exactly; the tests recompute them with the Python reference.
constexpr std::array<float, 256> kDynamicMap = {
    -0x1.fc6666p-1f, -0x1.f53332p-1f, -0x1.eep-1f, -0x1.e6ccccp-1f, -0x1.df9998p-1f, -0x1.d86666p-1f,
    -0x1.d13334p-1f, -0x1.cap-1f, -0x1.c2ccccp-1f, -0x1.bb9998p-1f, -0x1.b46666p-1f, -0x1.ad3332p-1f,
    -0x1.a6p-1f, -0x1.9eccccp-1f, -0x1.979998p-1f, -0x1.906666p-1f, -0x1.893334p-1f, -0x1.82p-1f,
    -0x1.7acccep-1f, -0x1.73999ap-1f, -0x1.6c6668p-1f, -0x1.653334p-1f, -0x1.5ep-1f, -0x1.56cccep-1f,
    -0x1.4f999ap-1f, -0x1.486666p-1f, -0x1.413334p-1f, -0x1.3ap-1f, -0x1.32ccccp-1f, -0x1.2b999ap-1f,
    -0x1.246668p-1f, -0x1.1d3334p-1f, -0x1.16p-1f, -0x1.0eccccp-1f, -0x1.07999ap-1f, -0x1.006666p-1f,
    -0x1.f26668p-2f, -0x1.e4p-2f, -0x1.d59998p-2f, -0x1.c73334p-2f, -0x1.b8ccccp-2f, -0x1.aa6664p-2f,
    -0x1.9cp-2f, -0x1.8d9998p-2f, -0x1.7f3334p-2f, -0x1.70ccccp-2f, -0x1.626664p-2f, -0x1.54p-2f,
    -0x1.459998p-2f, -0x1.373334p-2f, -0x1.28ccccp-2f, -0x1.1a6668p-2f, -0x1.0cp-2f, -0x1.fb3334p-3f,
    -0x1.de6668p-3f, -0x1.c1999ap-3f, -0x1.a4ccccp-3f, -0x1.88p-3f, -0x1.6b3332p-3f, -0x1.4e6666p-3f,
    -0x1.31999ap-3f, -0x1.14ccccp-3f, -0x1.fp-4f, -0x1.b66668p-4f, -0x1.93d70ap-4f, -0x1.8851eap-4f,
    -0x1.7ccccep-4f, -0x1.7147aep-4f, -0x1.65c29p-4f, -0x1.5a3d7p-4f, -0x1.4eb85p-4f, -0x1.433334p-4f,
    -0x1.37ae14p-4f, -0x1.2c28f6p-4f, -0x1.20a3d6p-4f, -0x1.151ebap-4f, -0x1.09999ap-4f, -0x1.fc28f4p-5f,
    -0x1.e51ebap-5f, -0x1.ce147ap-5f, -0x1.b70a3ep-5f, -0x1.ap-5f, -0x1.88f5c2p-5f, -0x1.71eb86p-5f,
    -0x1.5ae146p-5f, -0x1.43d70ap-5f, -0x1.2ccccep-5f, -0x1.15c28ep-5f, -0x1.fd70a4p-6f, -0x1.cf5c26p-6f,
    -0x1.a147aep-6f, -0x1.733334p-6f, -0x1.451eb8p-6f, -0x1.170a3ep-6f, -0x1.d1eb86p-7f, -0x1.75c29p-7f,
    -0x1.3e76c8p-7f, -0x1.2c083p-7f, -0x1.19999ap-7f, -0x1.072b02p-7f, -0x1.e978d4p-8f, -0x1.c49ba6p-8f,
    -0x1.9fbe76p-8f, -0x1.7ae148p-8f, -0x1.56041ap-8f, -0x1.3126e8p-8f, -0x1.0c49bap-8f, -0x1.ced914p-9f,
    -0x1.851eb8p-9f, -0x1.3b645ap-9f, -0x1.e353f8p-10f, -0x1.4fdf3ap-10f, -0x1.eecbfep-11f, -0x1.b3d07cp-11f,
    -0x1.78d5p-11f, -0x1.3dd982p-11f, -0x1.02de02p-11f, -0x1.8fc506p-12f, -0x1.19ce0ap-12f, -0x1.47ae16p-13f,
    -0x1.743e96p-14f, -0x1.15df66p-14f, -0x1.6f0068p-15f, -0x1.64840cp-16f, -0x1.040bfep-17f, -0x1.b43528p-19f,
    -0x1.27476ep-21f, 0.0f, 0x1.27476ep-21f, 0x1.b43528p-19f, 0x1.040bfep-17f, 0x1.64840cp-16f,
    0x1.6f0068p-15f, 0x1.15df66p-14f, 0x1.743e96p-14f, 0x1.47ae16p-13f, 0x1.19ce0ap-12f, 0x1.8fc506p-12f,
    0x1.02de02p-11f, 0x1.3dd982p-11f, 0x1.78d5p-11f, 0x1.b3d07cp-11f, 0x1.eecbfep-11f, 0x1.4fdf3ap-10f,
    0x1.e353f8p-10f, 0x1.3b645ap-9f, 0x1.851eb8p-9f, 0x1.ced914p-9f, 0x1.0c49bap-8f, 0x1.3126e8p-8f,
    0x1.56041ap-8f, 0x1.7ae148p-8f, 0x1.9fbe76p-8f, 0x1.c49ba6p-8f, 0x1.e978d4p-8f, 0x1.072b02p-7f,
    0x1.19999ap-7f, 0x1.2c083p-7f, 0x1.3e76c8p-7f, 0x1.75c29p-7f, 0x1.d1eb86p-7f, 0x1.170a3ep-6f,
    0x1.451eb8p-6f, 0x1.733334p-6f, 0x1.a147aep-6f, 0x1.cf5c26p-6f, 0x1.fd70a4p-6f, 0x1.15c28ep-5f,
    0x1.2ccccep-5f, 0x1.43d70ap-5f, 0x1.5ae146p-5f, 0x1.71eb86p-5f, 0x1.88f5c2p-5f, 0x1.ap-5f,
    0x1.b70a3ep-5f, 0x1.ce147ap-5f, 0x1.e51ebap-5f, 0x1.fc28f4p-5f, 0x1.09999ap-4f, 0x1.151ebap-4f,
    0x1.20a3d6p-4f, 0x1.2c28f6p-4f, 0x1.37ae14p-4f, 0x1.433334p-4f, 0x1.4eb85p-4f, 0x1.5a3d7p-4f,
    0x1.65c29p-4f, 0x1.7147aep-4f, 0x1.7ccccep-4f, 0x1.8851eap-4f, 0x1.93d70ap-4f, 0x1.b66668p-4f,
    0x1.fp-4f, 0x1.14ccccp-3f, 0x1.31999ap-3f, 0x1.4e6666p-3f, 0x1.6b3332p-3f, 0x1.88p-3f,
    0x1.a4ccccp-3f, 0x1.c1999ap-3f, 0x1.de6668p-3f, 0x1.fb3334p-3f, 0x1.0cp-2f, 0x1.1a6668p-2f,
    0x1.28ccccp-2f, 0x1.373334p-2f, 0x1.459998p-2f, 0x1.54p-2f, 0x1.626664p-2f, 0x1.70ccccp-2f,
    0x1.7f3334p-2f, 0x1.8d9998p-2f, 0x1.9cp-2f, 0x1.aa6664p-2f, 0x1.b8ccccp-2f, 0x1.c73334p-2f,
    0x1.d59998p-2f, 0x1.e4p-2f, 0x1.f26668p-2f, 0x1.006666p-1f, 0x1.07999ap-1f, 0x1.0eccccp-1f,
    0x1.16p-1f, 0x1.1d3334p-1f, 0x1.246668p-1f, 0x1.2b999ap-1f, 0x1.32ccccp-1f, 0x1.3ap-1f,
    0x1.413334p-1f, 0x1.486666p-1f, 0x1.4f999ap-1f, 0x1.56cccep-1f, 0x1.5ep-1f, 0x1.653334p-1f,
    0x1.6c6668p-1f, 0x1.73999ap-1f, 0x1.7acccep-1f, 0x1.82p-1f, 0x1.893334p-1f, 0x1.906666p-1f,
    0x1.979998p-1f, 0x1.9eccccp-1f, 0x1.a6p-1f, 0x1.ad3332p-1f, 0x1.b46666p-1f, 0x1.bb9998p-1f,
    0x1.c2ccccp-1f, 0x1.cap-1f, 0x1.d13334p-1f, 0x1.d86666p-1f, 0x1.df9998p-1f, 0x1.e6ccccp-1f,
    0x1.eep-1f, 0x1.f53332p-1f, 0x1.fc6666p-1f, 0x1p+0f,
};

// The values of w as f32: the tensor's own data when it is f32, else a converted copy in `copy`.
const float* as_f32(const Tensor& w, std::vector<float>& copy) {
  if (w.dtype() == DType::F32) return w.f32();
  copy.resize(size_t(w.numel()));
  convert_to_f32(w.dtype(), w.data(), copy.data(), copy.size());
  return copy.data();
}

float block_absmax(const float* x, int64_t len) {
  float m = 0.0f;
  int64_t i = 0;
#ifdef LORA_QUANT_AVX512
  __m512 mv = _mm512_setzero_ps();
  for (; i + 16 <= len; i += 16) mv = _mm512_max_ps(mv, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  m = _mm512_reduce_max_ps(mv);
#endif
  for (; i < len; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

// The 4-bit codes of x[0, len) scaled by inv (the block's reciprocal absmax).
void code_block_4bit(DType type, const float (&nf4_thr)[15], const float* x, int64_t len, float inv, uint8_t* out) {
  int64_t i = 0;
#ifdef LORA_QUANT_AVX512
  // code = how many thresholds the scaled value exceeds: one compare and masked increment per threshold
  // (ordered compares, so NaN exceeds none, as in the scalar rule).
  const __m512 inv_v = _mm512_set1_ps(inv);
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i fp4_ascending = _mm512_setr_epi32(0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011, 0, 0, 0, 0, 0, 0, 0, 0);
  for (; i + 16 <= len; i += 16) {
    const __m512 scaled = _mm512_mul_ps(_mm512_loadu_ps(x + i), inv_v);
    __m512i code = _mm512_setzero_si512();
    if (type == DType::NF4) {
      for (float t : nf4_thr) code = _mm512_mask_add_epi32(code, _mm512_cmp_ps_mask(_mm512_set1_ps(t), scaled, _CMP_LT_OQ), code, one);
    } else {
      const __m512 mag = _mm512_abs_ps(scaled);
      for (float t : kFP4Thresholds)
        code = _mm512_mask_add_epi32(code, _mm512_cmp_ps_mask(_mm512_set1_ps(t), mag, _CMP_LT_OQ), code, one);
      code = _mm512_permutexvar_epi32(code, fp4_ascending);
      const __mmask16 negative = _mm512_cmp_ps_mask(scaled, _mm512_setzero_ps(), _CMP_LT_OQ);
      code = _mm512_mask_or_epi32(code, negative, code, _mm512_set1_epi32(8));
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm512_cvtepi32_epi8(code));
  }
#endif
  for (; i < len; ++i) out[i] = type == DType::NF4 ? quantize_nf4(nf4_thr, x[i] * inv) : quantize_fp4(x[i] * inv);
}

// Blockwise absmax quantization: code_block(x, len, 1/absmax, codes) writes the codes of each block.
// Returns the absmax of every block.
template <typename CodeBlock>
std::vector<float> quantize_blocks(const float* x, int64_t n, int64_t blocksize, CodeBlock&& code_block, uint8_t* codes) {
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  std::vector<float> absmax(static_cast<size_t>(blocks));
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * blocksize, len = std::min(n, begin + blocksize) - begin;
    const float m = block_absmax(x + begin, len);
    absmax[size_t(b)] = m;
    code_block(x + begin, len, 1.0f / m, codes + begin);  // bitsandbytes multiplies by the reciprocal
  }
  return absmax;
}

std::shared_ptr<void> alloc_bytes(size_t n) { return aligned_alloc_shared(n); }

Tensor f32_tensor(const std::vector<float>& v) {
  Tensor t(DType::F32, {int64_t(v.size())});
  std::copy(v.begin(), v.end(), t.f32());
  return t;
}

Tensor code_tensor(const float* v, int64_t n) {
  Tensor t(DType::F32, {n});
  std::copy(v, v + n, t.f32());
  return t;
}

}  // namespace

// The code books every tensor quantized here shares (never modified).
const Tensor& shared_code(DType type) {
  static const Tensor nf4 = code_tensor(nf4_code().data(), 16), fp4 = code_tensor(fp4_code().data(), 16),
                      dyn = code_tensor(dynamic_map().data(), 256);
  return type == DType::NF4 ? nf4 : type == DType::FP4 ? fp4 : dyn;
}

namespace {

Tensor quantize_4bit(const float* x, int64_t n, const std::vector<int64_t>& shape, const QuantConfig& cfg,
                     DType source) {
  // One code per element; the pad of an odd count is a zero element of the last block (bitsandbytes
  // loads it as 0).
  const size_t n_codes = size_t(n + (n & 1));
  std::unique_ptr<uint8_t[]> codes(new uint8_t[n_codes]);
  std::vector<float> absmax;
  float thr[15];
  const auto t = nf4_thresholds();
  std::copy(t.begin(), t.end(), thr);
  absmax = quantize_blocks(
      x, n, cfg.blocksize,
      [&](const float* xb, int64_t len, float inv, uint8_t* out) { code_block_4bit(cfg.type, thr, xb, len, inv, out); },
      codes.get());
  if (n & 1) {
    const float pad = 0.0f * (1.0f / absmax.back());
    codes[n_codes - 1] = cfg.type == DType::NF4 ? quantize_nf4(thr, pad) : quantize_fp4(pad);
  }

  auto storage = alloc_bytes(size_t(n + 1) / 2);
  auto* packed = static_cast<uint8_t*>(storage.get());
  for (size_t i = 0; i + 1 < n_codes; i += 2) packed[i / 2] = uint8_t(codes[i] << 4 | codes[i + 1]);

  auto s = std::make_shared<QuantState>();
  s->type = cfg.type;
  s->blocksize = cfg.blocksize;
  s->source_dtype = source;
  s->code = shared_code(cfg.type);
  if (!cfg.double_quant) {
    s->absmax = f32_tensor(absmax);
  } else {
    // offset = mean(absmax), exactly rounded; then absmax − offset in blocks of 256 with the dynamic map.
    double sum = 0;
    for (float a : absmax) sum += a;
    const float offset = float(sum / double(absmax.size()));
    std::vector<float> centered(absmax.size());
    for (size_t i = 0; i < absmax.size(); ++i) centered[i] = absmax[i] - offset;
    const std::array<float, 256>& dyn = dynamic_map();
    float mids[255];
    for (int i = 0; i < 255; ++i) mids[i] = (dyn[i] + dyn[i + 1]) / 2.0f;
    s->nested = true;
    s->offset = offset;
    s->nested_blocksize = 256;
    s->absmax = Tensor(DType::U8, {int64_t(absmax.size())});
    const auto quantize_8bit = [&](const float* xb, int64_t len, float inv, uint8_t* out) {
      for (int64_t i = 0; i < len; ++i)  // the first midpoint >= the scaled value (NaN: 0)
        out[i] = uint8_t(std::lower_bound(mids, mids + 255, xb[i] * inv, [](float m, float v) { return m < v; }) - mids);
    };
    s->nested_absmax = f32_tensor(quantize_blocks(centered.data(), int64_t(centered.size()), 256, quantize_8bit,
                                                  s->absmax.data_as<uint8_t>()));
    s->nested_code = shared_code(DType::U8);
  }
  return Tensor(cfg.type, shape, storage.get(), storage, s);
}

Tensor quantize_int8_row(const float* x, const std::vector<int64_t>& shape, DType source) {
  if (shape.size() != 2) fail("int8 quantization needs a 2-D weight, got {} dimensions", shape.size());
  const int64_t rows = shape[0], cols = shape[1];
  auto storage = alloc_bytes(size_t(rows * cols));
  auto* q = static_cast<int8_t*>(storage.get());
  auto s = std::make_shared<QuantState>();
  s->type = DType::INT8_ROW;
  s->blocksize = cols;
  s->source_dtype = source;
  s->absmax = Tensor(DType::F32, {rows});
  float* scb = s->absmax.f32();
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    float m = 0.0f;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, std::fabs(row[c]));
    scb[r] = m;
    // round(x · 127/absmax), half to even like torch.round and __float2int_rn; an all-zero row stays 0
    // (bitsandbytes would divide by zero there).
    const float scale = m > 0.0f ? 127.0f / m : 0.0f;
    for (int64_t c = 0; c < cols; ++c) q[r * cols + c] = int8_t(std::nearbyint(std::clamp(row[c] * scale, -127.0f, 127.0f)));
  }
  return Tensor(DType::INT8_ROW, shape, storage.get(), storage, s);
}

}  // namespace

const std::array<float, 16>& nf4_code() { return kNF4; }

const std::array<float, 16>& fp4_code() {
  static const std::array<float, 16> code = [] {
    std::array<float, 16> c{};
    for (int i = 0; i < 16; ++i) c[i] = (i & 8 ? -kFP4Magnitude[i & 7] : kFP4Magnitude[i & 7]) / 12.0f;
    return c;
  }();
  return code;
}

const std::array<float, 256>& dynamic_map() { return kDynamicMap; }

DType quant_type_from_name(const std::string& name) {
  if (name == "nf4") return DType::NF4;
  if (name == "fp4") return DType::FP4;
  if (name == "int8") return DType::INT8_ROW;
  fail("unknown quantization type '{}' (expected nf4, fp4 or int8)", name);
}

const char* quant_type_name(DType type) {
  switch (type) {
    case DType::NF4: return "nf4";
    case DType::FP4: return "fp4";
    case DType::INT8_ROW: return "int8";
    default:
      if (is_ggml_quant(type)) return dtype_name(type);
      fail("{} is not a quantized type", dtype_name(type));
  }
}

float QuantState::block_absmax(int64_t b) const {
  if (!nested) return absmax.f32()[b];
  const uint8_t q = absmax.data_as<uint8_t>()[b];
  const float scaled = nested_code.f32()[q] * nested_absmax.f32()[b / nested_blocksize];
  return scaled + offset;
}

size_t QuantState::nbytes() const {
  auto n = [](const Tensor& t) { return t.empty() ? size_t(0) : t.nbytes(); };
  auto own = [&](const Tensor& t, DType book) { return t.data() == shared_code(book).data() ? size_t(0) : n(t); };
  return n(absmax) + n(nested_absmax) + own(code, type) + own(nested_code, DType::U8);
}

Tensor quantize(const Tensor& w, const QuantConfig& config) {
  if (w.dtype() != DType::F32 && w.dtype() != DType::BF16 && w.dtype() != DType::F16)
    fail("cannot quantize a {} tensor (f32, bf16 or f16 expected)", dtype_name(w.dtype()));
  std::vector<float> copy;
  const float* x = as_f32(w, copy);
  if (config.type == DType::INT8_ROW) return quantize_int8_row(x, w.shape(), w.dtype());
  if (config.type != DType::NF4 && config.type != DType::FP4)
    fail("cannot quantize to {} (nf4, fp4 or int8_row expected)", dtype_name(config.type));
  if (config.blocksize < 2 || config.blocksize % 2 != 0)
    fail("4-bit blocksize must be a positive even number, got {}", config.blocksize);
  if (w.numel() == 0) fail("cannot quantize an empty tensor");
  return quantize_4bit(x, w.numel(), w.shape(), config, w.dtype());
}

float dequantize_at(const QuantState& s, DType type, const void* data, int64_t i) {
  if (is_ggml_quant(type)) {
    float v;
    ggml_dequantize_range(type, data, i, i + 1, &v);
    return v;
  }
  if (type == DType::INT8_ROW) {
    const int8_t q = static_cast<const int8_t*>(data)[i];
    const float scaled = float(q) * s.absmax.f32()[i / s.blocksize];
    return scaled * (1.0f / 127.0f);
  }
  const uint8_t byte = static_cast<const uint8_t*>(data)[i / 2];
  const uint8_t c = i % 2 == 0 ? byte >> 4 : byte & 15;
  return s.code.f32()[c] * s.block_absmax(i / s.blocksize);
}

float dequantize_at(const Tensor& q, int64_t i) {
  if (!q.quantized()) fail("dequantize_at: a {} tensor is not quantized", dtype_name(q.dtype()));
  return dequantize_at(*q.quant(), q.dtype(), q.data(), i);
}

void dequantize_range(const Tensor& q, int64_t begin, int64_t end, float* out) {
  if (!q.quantized()) fail("dequantize: a {} tensor is not quantized", dtype_name(q.dtype()));
  if (begin < 0 || end > q.numel() || begin > end) fail("dequantize: range [{}, {}) outside {} elements", begin, end, q.numel());
  const QuantState& s = *q.quant();
  if (is_ggml_quant(q.dtype())) return ggml_dequantize_range(q.dtype(), q.data(), begin, end, out);
  if (q.dtype() == DType::INT8_ROW) {
    const auto* d = q.data_as<int8_t>();
    const float* scb = s.absmax.f32();
    for (int64_t i = begin; i < end; ++i) out[i - begin] = float(d[i]) * scb[i / s.blocksize] * (1.0f / 127.0f);
    return;
  }
  const auto* d = q.data_as<uint8_t>();
  const float* code = s.code.f32();
  for (int64_t i = begin; i < end;) {
    const int64_t b = i / s.blocksize, block_end = std::min(end, (b + 1) * s.blocksize);
    const float absmax = s.block_absmax(b);
    for (; i < block_end; ++i) {
      const uint8_t byte = d[i / 2];
      out[i - begin] = code[i % 2 == 0 ? byte >> 4 : byte & 15] * absmax;
    }
  }
}

Tensor dequantize(const Tensor& q) {
  Tensor out(DType::F32, q.shape());
  const int64_t n = q.numel(), chunk = 1 << 16;
#pragma omp parallel for schedule(static) if (n > chunk)
  for (int64_t c = 0; c < (n + chunk - 1) / chunk; ++c)
    dequantize_range(q, c * chunk, std::min(n, (c + 1) * chunk), out.f32() + c * chunk);
  return out;
}

double bits_per_weight(const Tensor& q) {
  if (!q.quantized()) return 8.0 * double(dtype_size(q.dtype()));
  return 8.0 * double(q.nbytes() + q.quant()->nbytes()) / double(q.numel());
}

}  // namespace lora
