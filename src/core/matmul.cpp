#include "core/matmul.h"

#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/ggml_quant.h"
#include "core/quant.h"

namespace lora {

float MatView::at(int64_t r, int64_t c) const {
  const int64_t i = r * stride + c;
  if (quant) return dequantize_at(*quant, dtype, data, i);
  if (dtype == DType::F32) return static_cast<const float*>(data)[i];
  if (dtype == DType::BF16) return bf16_to_f32(static_cast<const uint16_t*>(data)[i]);
  fail("MatView: unsupported dtype {}", dtype_name(dtype));
}

MatView mat(const Tensor& t) {
  if (t.ndim() < 1) fail("mat(): scalar tensor");
  const int64_t cols = t.dim(-1);
  const int64_t rows = cols == 0 ? 0 : t.numel() / cols;
  return MatView{t.data(), t.dtype(), rows, cols, cols, t.quant()};
}

MutMatView mut_mat(Tensor& t) {
  if (t.ndim() < 1) fail("mut_mat(): scalar tensor");
  const int64_t cols = t.dim(-1);
  const int64_t rows = cols == 0 ? 0 : t.numel() / cols;
  return MutMatView{t.f32(), rows, cols, cols};
}

namespace {

struct Shape {
  int64_t m, n, k;
};

Shape check_shapes(const MatView& a, bool trans_a, const MatView& b, bool trans_b, const MutMatView& c) {
  const int64_t m = trans_a ? a.cols : a.rows;
  const int64_t k = trans_a ? a.rows : a.cols;
  const int64_t kb = trans_b ? b.cols : b.rows;
  const int64_t n = trans_b ? b.rows : b.cols;
  if (k != kb || c.rows != m || c.cols != n)
    fail("matmul shape mismatch: op(A) is [{}, {}], op(B) is [{}, {}], C is [{}, {}]", m, k, kb, n, c.rows, c.cols);
  return {m, n, k};
}

dnnl::memory::data_type dnnl_type(DType t) {
  switch (t) {
    case DType::F32: return dnnl::memory::data_type::f32;
    case DType::BF16: return dnnl::memory::data_type::bf16;
    default: fail("matmul: unsupported operand dtype {}", dtype_name(t));
  }
}

// A primitive depends only on shapes, strides, types and scalars, never on data pointers, so one is
// built per distinct problem and reused: building a oneDNN primitive costs far more than running a
// small (decode-time) matmul.
using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, float, float>;

struct Primitive {
  dnnl::matmul prim;
  dnnl::memory::desc scratchpad;  // set for primitives run by one thread inside a parallel region
};

struct Engine {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::map<Key, Primitive> primitives;
  std::mutex mutex;
};

Engine& engine() {
  static Engine e;  // the CPU engine and its primitive cache; oneDNN itself is process-global
  return e;
}

// oneDNN 2.6 multiplies bf16 only by bf16, so an f32 operand meeting a bf16 one is rounded to bf16.
std::vector<uint16_t> to_bf16_dense(const MatView& v) {
  std::vector<uint16_t> out(size_t(v.rows * v.cols));
  for (int64_t r = 0; r < v.rows; ++r)
    convert_from_f32(static_cast<const float*>(v.data) + r * v.stride, DType::BF16, out.data() + r * v.cols,
                     size_t(v.cols));
  return out;
}

// One oneDNN matmul. `in_parallel_region`: the caller is one of the threads of an OpenMP region and the
// product runs on that thread alone (oneDNN does not nest), with its own stream and scratchpad so that
// the threads' products run concurrently.
void dense_matmul(const MatView& a_in, bool trans_a, const MatView& b_in, bool trans_b, const MutMatView& c,
                  const Shape& s, float alpha, float beta, bool in_parallel_region = false) {
  MatView a = a_in, b = b_in;
  std::vector<uint16_t> a_bf16, b_bf16;
  if (a.dtype != b.dtype) {
    if (a.dtype == DType::F32) {
      a_bf16 = to_bf16_dense(a);
      a = MatView{a_bf16.data(), DType::BF16, a.rows, a.cols, a.cols};
    } else {
      b_bf16 = to_bf16_dense(b);
      b = MatView{b_bf16.data(), DType::BF16, b.rows, b.cols, b.cols};
    }
  }

  // op(A) as an [m,k] descriptor: a transposed operand is the same memory with swapped strides.
  const dnnl::memory::dims a_strides = trans_a ? dnnl::memory::dims{1, a.stride} : dnnl::memory::dims{a.stride, 1};
  const dnnl::memory::dims b_strides = trans_b ? dnnl::memory::dims{1, b.stride} : dnnl::memory::dims{b.stride, 1};
  const int64_t a_ld = trans_a ? -a.stride : a.stride;  // sign encodes the transpose in the key
  const int64_t b_ld = trans_b ? -b.stride : b.stride;

  Engine& e = engine();
  const Key key{s.m, s.n, s.k, a_ld, b_ld, c.stride, int(a.dtype), in_parallel_region ? 1 : 0, 0, alpha, beta};
  dnnl::memory::desc a_md({s.m, s.k}, dnnl_type(a.dtype), a_strides);
  dnnl::memory::desc b_md({s.k, s.n}, dnnl_type(b.dtype), b_strides);
  dnnl::memory::desc c_md({s.m, s.n}, dnnl::memory::data_type::f32, dnnl::memory::dims{c.stride, 1});

  Primitive prim;
  {
    std::lock_guard<std::mutex> lock(e.mutex);
    auto it = e.primitives.find(key);
    if (it == e.primitives.end()) {
      dnnl::primitive_attr attr;
      if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
      if (beta != 0.0f) {
        dnnl::post_ops ops;
        ops.append_sum(beta);
        attr.set_post_ops(ops);
      }
      if (in_parallel_region) attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, e.engine);
      Primitive p{dnnl::matmul(pd), in_parallel_region ? pd.scratchpad_desc() : dnnl::memory::desc()};
      it = e.primitives.emplace(key, p).first;
    }
    prim = it->second;
  }
  dnnl::memory a_mem(a_md, e.engine, const_cast<void*>(a.data));
  dnnl::memory b_mem(b_md, e.engine, const_cast<void*>(b.data));
  dnnl::memory c_mem(c_md, e.engine, c.data);
  if (!in_parallel_region) {
    prim.prim.execute(e.stream, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}});
    e.stream.wait();
    return;
  }
  thread_local dnnl::stream stream(engine().engine);
  thread_local std::vector<uint8_t> scratch;
  scratch.resize(std::max<size_t>(prim.scratchpad.get_size(), 1));
  dnnl::memory scratch_mem(prim.scratchpad, e.engine, scratch.data());
  prim.prim.execute(stream, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem},
                             {DNNL_ARG_SCRATCHPAD, scratch_mem}});
  stream.wait();
}

// Columns of the output each thread decodes and multiplies: an equal share per thread (a multiple of
// `align`, so that a column slice keeps quantization blocks whole). Narrower, cache-sized panels were measured
// slower: oneDNN blocks a whole share better than it multiplies many thin panels, and thin column
// slices of a row-major code matrix decode in short runs.
int64_t panel_columns(int64_t n, int64_t threads, int64_t align) {
  const int64_t share = (n + threads - 1) / threads;
  return std::min(n, std::max<int64_t>(align, (share + align - 1) / align * align));
}

// C = alpha · op(A) · op(B) + beta · C with B quantized. The columns of op(B) (rows of B when transposed,
// column slices otherwise) are cut into panels; in one parallel region each thread decodes its panels to
// bf16 into its own scratch and multiplies them with A (rounded to bf16 once) on its own, so decoding
// and multiplying need no more synchronization than one dense product.
void quantized_b_matmul(const MatView& a, bool trans_a, const MatView& b, bool trans_b, const MutMatView& c,
                        const Shape& s, float alpha, float beta) {
  if (b.stride != b.cols) fail("matmul: a quantized operand must be a whole matrix (stride {} != {} columns)", b.stride, b.cols);
  thread_local std::vector<uint16_t> a_bf16;  // reused: a fresh multi-megabyte buffer per call costs page faults
  MatView a16 = a;
  if (a.dtype == DType::F32) {
    a_bf16.resize(size_t(a.rows * a.cols));
    for (int64_t r = 0; r < a.rows; ++r) {
      const float* src = static_cast<const float*>(a.data) + r * a.stride;
      for (int64_t c = 0; c < a.cols; ++c) a_bf16[size_t(r * a.cols + c)] = f32_to_bf16(src[c]);
    }
    a16 = MatView{a_bf16.data(), DType::BF16, a.rows, a.cols, a.cols};
  } else if (a.dtype != DType::BF16) {
    fail("matmul: cannot multiply {} by a quantized matrix", dtype_name(a.dtype));
  }
  // 64 keeps bitsandbytes' 4-bit blocks whole; ggml's blocks are 32 or 256 values of a row.
  const int64_t align = is_ggml_quant(b.dtype) ? std::max<int64_t>(64, ggml_block(b.dtype).elements) : 64;
  const int64_t p_cols = panel_columns(s.n, omp_get_max_threads(), align);
  const int64_t panels = (s.n + p_cols - 1) / p_cols;
#pragma omp parallel
  {
    thread_local std::vector<uint16_t> panel;  // a thread's share of the decoded matrix
    panel.resize(size_t(s.k * p_cols));
    uint16_t* buf = panel.data();
#pragma omp for schedule(dynamic, 1)
    for (int64_t j = 0; j < panels; ++j) {
      const int64_t n0 = j * p_cols, pn = std::min(p_cols, s.n - n0);
      MatView pv;
      if (trans_b) {  // B [n, k]: rows n0 .. n0+pn are one contiguous run of codes
        dequantize_range_bf16(*b.quant, b.dtype, b.data, n0 * s.k, (n0 + pn) * s.k, buf);
        pv = MatView{buf, DType::BF16, pn, s.k, s.k};
      } else {        // B [k, n]: columns n0 .. n0+pn of every row
        for (int64_t r = 0; r < s.k; ++r)
          dequantize_range_bf16(*b.quant, b.dtype, b.data, r * s.n + n0, r * s.n + n0 + pn, buf + r * pn);
        pv = MatView{buf, DType::BF16, s.k, pn, pn};
      }
      const MutMatView cv{c.data + n0, c.rows, pn, c.stride};
      dense_matmul(a16, trans_a, pv, trans_b, cv, Shape{s.m, pn, s.k}, alpha, beta, /*in_parallel_region=*/true);
    }
  }
}

// C[M,N] = alpha · A · Bᵀ + beta · C for a few rows of A (decoding a token) and B [N, K] in one of
// ggml's block types: each row of B is decoded block by block in registers, exactly (no bf16 rounding),
// and dotted with every row of A, so the weight is read once, straight from its blocks.
void quantized_gemv(const MatView& a, const MatView& b, const MutMatView& c, const Shape& s, float alpha, float beta) {
  thread_local std::vector<float> a32;  // A as fp32 rows
  a32.resize(size_t(s.m * s.k));
  for (int64_t r = 0; r < s.m; ++r)
    for (int64_t p = 0; p < s.k; ++p) a32[size_t(r * s.k + p)] = a.at(r, p);
  const size_t row_bytes = dtype_nbytes(b.dtype, s.k);
  const auto* blocks = static_cast<const uint8_t*>(b.data);
  const float* x = a32.data();
  // Q8_0 / Q4_K with VNNI: x rounded to int8 once, each weight row in 8-bit multiply-adds (as llama.cpp).
  thread_local Q8Rows q8;
  Q8Rows& xq = q8;  // (named once here: inside the parallel loop, q8 would be each thread's own, empty)
  const bool integer = has_q8_dot(b.dtype);
  if (integer) quantize_rows_q8(x, s.k, s.m, s.k, xq);
#pragma omp parallel for schedule(static) if (s.n * s.k > (1 << 16) && !omp_in_parallel())
  for (int64_t j = 0; j < s.n; ++j) {
    float dots[4];
    if (integer)
      ggml_dot_rows_q8(b.dtype, blocks + size_t(j) * row_bytes, xq, dots);
    else
      ggml_dot_rows(b.dtype, blocks + size_t(j) * row_bytes, s.k, x, s.k, s.m, dots);
    for (int64_t r = 0; r < s.m; ++r) {
      float& out = c.data[r * c.stride + j];
      out = alpha * dots[r] + (beta == 0.0f ? 0.0f : beta * out);
    }
  }
}

}  // namespace

void matmul(const MatView& a, bool trans_a, const MatView& b, bool trans_b, const MutMatView& c, float alpha,
            float beta) {
  const Shape s = check_shapes(a, trans_a, b, trans_b, c);
  if (s.m == 0 || s.n == 0) return;
  if (s.k == 0) {
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) c.data[i * c.stride + j] *= beta;
    return;
  }
  if (b.quant && !a.quant && trans_b && !trans_a && s.m <= 4 && is_ggml_quant(b.dtype))
    return quantized_gemv(a, b, c, s, alpha, beta);
  if (b.quant && !a.quant) return quantized_b_matmul(a, trans_a, b, trans_b, c, s, alpha, beta);
  if (a.quant || b.quant) {
    // A quantized left operand (no layer has one): decode whole operands, the simple way.
    std::vector<uint16_t> da, db;
    auto decode = [](const MatView& v, std::vector<uint16_t>& out) {
      if (!v.quant) return v;
      if (v.stride != v.cols) fail("matmul: a quantized operand must be a whole matrix");
      out.resize(size_t(v.rows * v.cols));
      dequantize_range_bf16(*v.quant, v.dtype, v.data, 0, v.rows * v.cols, out.data());
      return MatView{out.data(), DType::BF16, v.rows, v.cols, v.cols};
    };
    return dense_matmul(decode(a, da), trans_a, decode(b, db), trans_b, c, s, alpha, beta);
  }
  // Inside a parallel region (products run side by side, one per thread) oneDNN must not open its own.
  dense_matmul(a, trans_a, b, trans_b, c, s, alpha, beta, /*in_parallel_region=*/omp_in_parallel() != 0);
}

void matmul_reference(const MatView& a, bool trans_a, const MatView& b, bool trans_b, const MutMatView& c,
                      float alpha, float beta) {
  const Shape s = check_shapes(a, trans_a, b, trans_b, c);
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < s.k; ++p)
        acc += double(trans_a ? a.at(p, i) : a.at(i, p)) * double(trans_b ? b.at(j, p) : b.at(p, j));
      float& out = c.data[i * c.stride + j];
      out = float(alpha * acc + (beta == 0.0f ? 0.0 : double(beta) * out));
    }
}

void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, Tensor& y) {
  const MatView xv = mat(x);
  MutMatView yv = mut_mat(y);
  matmul(xv, false, mat(weight), true, yv);
  if (bias && !bias->empty()) add_to_rows(*bias, y);
}

void add_to_rows(const Tensor& v, Tensor& y) {
  MutMatView yv = mut_mat(y);
  if (v.numel() != yv.cols) fail("bias has {} elements, output has {} columns", v.numel(), yv.cols);
  const float* b = v.f32();
  for (int64_t r = 0; r < yv.rows; ++r) {
    float* row = yv.data + r * yv.stride;
    for (int64_t j = 0; j < yv.cols; ++j) row[j] += b[j];
  }
}

}  // namespace lora
