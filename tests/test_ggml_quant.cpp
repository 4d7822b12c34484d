// ggml's block formats: decoding bit-exact with a numpy transcription of ggml's reference code, the
// vectorized decoders bit-exact with the scalar ones, quantization error within each type's resolution,
// edge blocks, bad input, and the quantized matrix products against the decoded weight.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "core/ggml_quant.h"
#include "core/matmul.h"
#include "core/quant.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "test_util.h"

namespace lora {
namespace {

using test::TempDir;

const DType kTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K,
                        DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_NL, DType::IQ4_XS};

std::vector<float> normal(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

std::string quantized(DType t, const std::vector<float>& x) {
  std::string b(dtype_nbytes(t, int64_t(x.size())), '\0');
  ggml_quantize(t, x.data(), int64_t(x.size()), b.data());
  return b;
}

// Random bytes everywhere, with every fp16 scale replaced by a random finite value (what any file may
// hold: codes the quantizers would never write, negative and subnormal scales).
std::string random_blocks(DType t, int64_t n_blocks, uint32_t seed) {
  const GGMLBlock g = ggml_block(t);
  std::mt19937 rng(seed);
  std::string b(size_t(n_blocks) * g.bytes, '\0');
  for (char& c : b) c = char(rng() & 0xff);
  std::vector<size_t> scale_at;
  switch (t) {
    case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: scale_at = {0, 2}; break;
    case DType::Q2_K: scale_at = {80, 82}; break;
    case DType::Q3_K: scale_at = {108}; break;
    case DType::Q6_K: scale_at = {208}; break;
    default: scale_at = {0};
  }
  std::uniform_real_distribution<float> mag(-12.0f, 2.0f);
  for (int64_t i = 0; i < n_blocks; ++i)
    for (size_t o : scale_at) {
      const float v = (rng() & 1 ? -1.0f : 1.0f) * std::exp2(mag(rng));
      const uint16_t h = i % 7 == 3 ? uint16_t(rng() & 0x83ff) : f32_to_f16(v);  // every 7th: subnormal or zero
      std::memcpy(&b[size_t(i) * g.bytes + o], &h, 2);
    }
  return b;
}

std::vector<float> decode(DType t, const std::string& blocks, bool fast) {
  const int64_t n = int64_t(blocks.size() / ggml_block(t).bytes) * ggml_block(t).elements;
  std::vector<float> y(static_cast<size_t>(n));
  if (fast) ggml_dequantize(t, blocks.data(), n, y.data());
  else ggml_dequantize_reference(t, blocks.data(), n, y.data());
  return y;
}

void expect_same_bits(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  int64_t differ = 0, first = -1;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], 4) != 0 && !(std::isnan(a[i]) && std::isnan(b[i]))) {
      if (first < 0) first = int64_t(i);
      ++differ;
    }
  EXPECT_EQ(differ, 0) << what << ": first difference at " << first << ": " << (first >= 0 ? a[size_t(first)] : 0.f)
                       << " vs " << (first >= 0 ? b[size_t(first)] : 0.f);
}

// The blocks every type is checked on: random bytes, quantized normal data, and the edge blocks (all
// zero, one huge value among small ones, values so small the scale is subnormal in fp16).
std::string test_blocks(DType t) {
  const int64_t e = ggml_block(t).elements;
  std::string b = random_blocks(t, 48, 7 + uint32_t(t));
  b += quantized(t, normal(8 * e, 11 + uint32_t(t)));
  b += quantized(t, std::vector<float>(size_t(e), 0.0f));
  std::vector<float> spike = normal(e, 3, 1e-3f);
  spike[size_t(e / 3)] = 3.0e4f;
  b += quantized(t, spike);
  b += quantized(t, normal(e, 5, 1e-6f));
  return b;
}

TEST(GgmlQuant, DecodersMatchThePythonTranscriptionOfGgmlBitForBit) {
  TempDir tmp;
  for (DType t : kTypes) {
    const std::string blocks = test_blocks(t);
    test::write_text(tmp / "blocks.bin", blocks);
    const test::RunResult r = test::run(test::python() + " " + LORA_PYTHON_DIR + "/ggml_reference.py " +
                                        dtype_name(t) + " " + (tmp / "blocks.bin") + " " + (tmp / "out.f32"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string raw = test::read_text(tmp / "out.f32");
    std::vector<float> python(raw.size() / 4);
    std::memcpy(python.data(), raw.data(), raw.size());
    const std::vector<float> reference = decode(t, blocks, false);
    expect_same_bits(reference, python, std::string(dtype_name(t)) + " reference vs python");
    expect_same_bits(decode(t, blocks, true), reference, std::string(dtype_name(t)) + " vectorized vs reference");
  }
}

TEST(GgmlQuant, QuantizationErrorIsWithinEachTypesResolution) {
  // Relative RMS error of normal weights; the bounds sit ~25% above what ggml's quantizers reach here
  // (measured: q8_0 0.54%, q6_k 1.8%, q5_k 3.6%, q5_0 4.3%, q4_k 7.1%, iq4 7.6%, q4_0 8.6%, q3_k 15%).
  const std::pair<DType, double> bounds[] = {
      {DType::Q8_0, 0.0068}, {DType::Q6_K, 0.022}, {DType::Q5_0, 0.054}, {DType::Q5_1, 0.05}, {DType::Q5_K, 0.045},
      {DType::Q4_0, 0.108},  {DType::Q4_1, 0.1},   {DType::Q4_K, 0.089}, {DType::IQ4_NL, 0.095}, {DType::IQ4_XS, 0.096},
      {DType::Q3_K, 0.19},   {DType::Q2_K, 0.32}};
  const std::vector<float> x = normal(256 * 64, 42, 0.02f);
  for (const auto& [t, bound] : bounds) {
    const std::vector<float> y = decode(t, quantized(t, x), true);
    double err = 0, ref = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      err += double(y[i] - x[i]) * double(y[i] - x[i]);
      ref += double(x[i]) * double(x[i]);
    }
    const double rel = std::sqrt(err / ref);
    EXPECT_LT(rel, bound) << dtype_name(t);
    EXPECT_GT(rel, bound / 8) << dtype_name(t) << ": suspiciously exact";
  }
}

TEST(GgmlQuant, EdgeBlocksDecodeToWhatWentIn) {
  for (DType t : kTypes) {
    const int64_t e = ggml_block(t).elements;
    for (float v : decode(t, quantized(t, std::vector<float>(size_t(e), 0.0f)), true)) ASSERT_EQ(v, 0.0f) << dtype_name(t);
    std::vector<float> spike(size_t(e), 0.0f);
    spike[5] = 1000.0f;
    const std::vector<float> y = decode(t, quantized(t, spike), true);
    EXPECT_NEAR(y[5], 1000.0f, 1000.0f * 0.02f) << dtype_name(t);
  }
}

TEST(GgmlQuant, NonFiniteOrOverflowingInputIsAnError) {
  for (DType t : kTypes) {
    std::vector<float> x = normal(ggml_block(t).elements, 1);
    x[3] = std::nanf("");
    EXPECT_THROW(quantized(t, x), Error) << dtype_name(t);
    x[3] = INFINITY;
    EXPECT_THROW(quantized(t, x), Error) << dtype_name(t);
    x[3] = 1e30f;  // the block's fp16 scale would be infinite
    EXPECT_THROW(quantized(t, x), Error) << dtype_name(t);
  }
  EXPECT_THROW(ggml_quantize_tensor(Tensor(DType::F32, {4, 48}), DType::Q4_K), Error);  // 48 is not whole blocks
}

TEST(GgmlQuant, RangesAndRowSlicesDecodeTheirOwnValues) {
  const std::vector<float> x = normal(4 * 512, 9);
  Tensor w(DType::F32, {4, 512});
  std::memcpy(w.f32(), x.data(), x.size() * 4);
  for (DType t : {DType::Q4_K, DType::Q8_0, DType::Q6_K}) {
    const Tensor q = ggml_quantize_tensor(w, t);
    EXPECT_EQ(q.nbytes(), size_t(4 * 512 / ggml_block(t).elements) * ggml_block(t).bytes);
    const Tensor all = q.to(DType::F32);
    std::vector<float> part(300);
    dequantize_range(q, 700, 1000, part.data());  // starts and ends inside blocks
    for (int i = 0; i < 300; ++i) ASSERT_EQ(part[size_t(i)], all.f32()[700 + i]) << dtype_name(t);
    std::vector<uint16_t> part16(300);
    dequantize_range_bf16(q, 700, 1000, part16.data());
    for (int i = 0; i < 300; ++i) ASSERT_EQ(part16[size_t(i)], f32_to_bf16(all.f32()[700 + i])) << dtype_name(t);
    const Tensor rows = q.slice_rows(1, 3).to(DType::F32);
    for (int i = 0; i < 1024; ++i) ASSERT_EQ(rows.f32()[i], all.f32()[512 + i]) << dtype_name(t);
  }
}

// y = x·Wᵀ (forward) and dx = dy·W (input gradient) with W quantized, against the naive product with the
// decoded weight: the decode path (M <= 4, exact fp32) and the panel path (bf16 panels).
// The integer decode-time product computes exactly Σ w · x̂ with x̂ = dx · xq the int8-rounded x (up to fp32
// rounding), and x̂ is within half a step of x.
TEST(GgmlQuant, Int8DecodeProductIsTheDotWithTheRoundedX) {
  const int64_t k = 768;
  for (DType t : {DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    if (!has_q8_dot(t)) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
    const std::vector<float> wv = normal(k, 3, 0.05f);
    std::vector<uint8_t> row(dtype_nbytes(t, k));
    ggml_quantize(t, wv.data(), k, row.data());
    std::vector<float> w(static_cast<size_t>(k), 0.0f);
    ggml_dequantize_reference(t, row.data(), k, w.data());
    for (int64_t m = 1; m <= 4; ++m) {
      std::vector<float> x = normal(m * k, 11 + uint32_t(m));
      x[5] = 0.0f;
      for (int i = 64; i < 96; ++i) x[size_t(i)] = 0.0f;  // an all-zero block: scale 0
      Q8Rows xq;
      quantize_rows_q8(x.data(), k, m, k, xq);
      float got[4];
      ASSERT_TRUE(ggml_dot_rows_q8(t, row.data(), xq, got));
      for (int64_t r = 0; r < m; ++r) {
        double want = 0, scale = 0;
        for (int64_t i = 0; i < k; ++i) {
          const double d = xq.d[size_t(r * (k / 32) + i / 32)];
          const double xhat = d * xq.q[size_t(r * k + i)];
          EXPECT_LE(std::fabs(xhat - x[size_t(r * k + i)]), 0.5 * d + 1e-7) << i;
          want += double(w[size_t(i)]) * xhat;
          scale += std::fabs(double(w[size_t(i)]) * xhat);
        }
        EXPECT_NEAR(got[r], want, 2e-6 * scale) << dtype_name(t) << " m=" << m << " row " << r;
      }
    }
  }
}

TEST(GgmlQuant, QuantizedMatmulMatchesTheDecodedWeight) {
  const int64_t out = 512, in = 768;
  Tensor w(DType::F32, {out, in});
  const std::vector<float> wv = normal(out * in, 21, 0.05f);
  std::memcpy(w.f32(), wv.data(), wv.size() * 4);
  for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q5_0, DType::IQ4_XS}) {
    const Tensor q = ggml_quantize_tensor(w, t);
    const Tensor decoded = q.to(DType::F32);
    for (int64_t m : {1, 3, 37}) {
      Tensor x(DType::F32, {m, in}), y(DType::F32, {m, out}), ref(DType::F32, {m, out});
      const std::vector<float> xv = normal(m * in, 5 + uint32_t(m));
      std::memcpy(x.f32(), xv.data(), xv.size() * 4);
      matmul(mat(x), false, mat(q), true, mut_mat(y));
      matmul_reference(mat(x), false, mat(decoded), true, mut_mat(ref));
      // m <= 4: Q8_0 and Q4_K round x to int8 blocks (VNNI, as llama.cpp), the others are exact; more rows go
      // through bf16 panels, which round x and W
      const double tol = m > 4 ? 2e-2 : has_q8_dot(t) ? 1e-2 : 1e-4;
      double max_err = 0, max_ref = 0;
      for (int64_t i = 0; i < m * out; ++i) {
        max_err = std::max(max_err, double(std::fabs(y.f32()[i] - ref.f32()[i])));
        max_ref = std::max(max_ref, double(std::fabs(ref.f32()[i])));
      }
      EXPECT_LT(max_err, tol * max_ref) << dtype_name(t) << " forward m=" << m;

      Tensor dy(DType::F32, {m, out}), dx(DType::F32, {m, in}), dx_ref(DType::F32, {m, in});
      const std::vector<float> dyv = normal(m * out, 8 + uint32_t(m));
      std::memcpy(dy.f32(), dyv.data(), dyv.size() * 4);
      matmul(mat(dy), false, mat(q), false, mut_mat(dx));
      matmul_reference(mat(dy), false, mat(decoded), false, mut_mat(dx_ref));
      max_err = max_ref = 0;
      for (int64_t i = 0; i < m * in; ++i) {
        max_err = std::max(max_err, double(std::fabs(dx.f32()[i] - dx_ref.f32()[i])));
        max_ref = std::max(max_ref, double(std::fabs(dx_ref.f32()[i])));
      }
      EXPECT_LT(max_err, 2e-2 * max_ref) << dtype_name(t) << " input gradient m=" << m;
    }
  }
}

TEST(GgmlQuant, GgufTensorsStayQuantizedAndBadScalesNameTheTensor) {
  TempDir tmp;
  const std::vector<float> x = normal(2 * 256, 4);
  std::string blocks = quantized(DType::Q4_K, x);
  GGUFWriter w;
  w.add_tensor_raw("good", GGMLType(12), {256, 2}, blocks);
  std::string bad = blocks;
  const uint16_t nan = 0x7e00;
  std::memcpy(&bad[144 + 2], &nan, 2);  // dmin of the second block
  w.add_tensor_raw("blk.0.ffn_up.weight", GGMLType(12), {256, 2}, bad);
  w.write(tmp / "q.gguf");
  const GGUFFile g = GGUFFile::open(tmp / "q.gguf");
  const Tensor good = g.load_tensor("good");
  EXPECT_EQ(good.dtype(), DType::Q4_K);
  EXPECT_EQ(good.shape(), (std::vector<int64_t>{2, 256}));
  EXPECT_EQ(good.data(), static_cast<const void*>(g.tensor_data(*g.find_tensor("good"))));  // a view of the file
  try {
    g.load_tensor("blk.0.ffn_up.weight");
    FAIL() << "a NaN scale was accepted";
  } catch (const FormatError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("q.gguf"), std::string::npos) << m;
    EXPECT_NE(m.find("blk.0.ffn_up.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("block 1"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace lora
