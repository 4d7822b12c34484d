#include "vision/pool.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "vision/dnnl_cpu.h"

namespace lora::vision {
namespace {

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;

std::vector<int64_t> pooled_shape(const std::vector<int64_t>& x, int64_t k, int64_t s) {
  if (x.size() != 4) fail("max_pool2d: input must be NCHW");
  if (x[2] < k || x[3] < k) fail("max_pool2d: a {}x{} input is smaller than the {}x{} window", x[2], x[3], k, k);
  return {x[0], x[1], (x[2] - k) / s + 1, (x[3] - k) / s + 1};
}

dnnl::pooling_forward::desc pool_desc(prop_kind kind, const std::vector<int64_t>& x_shape, int64_t k, int64_t s) {
  return dnnl::pooling_forward::desc(kind, algorithm::pooling_max, plain_f32(x_shape),
                                     plain_f32(pooled_shape(x_shape, k, s)), {s, s}, {k, k}, {0, 0}, {0, 0});
}

memory mem(const memory::desc& md, const Tensor& t) {
  return memory(md, dnnl_cpu().engine, const_cast<void*>(t.data()));
}

// torch's adaptive window [floor(i·in/out), ceil((i+1)·in/out)).
int64_t window_begin(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
int64_t window_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

}  // namespace

Tensor maxpool2d_forward(const Tensor& x, int64_t kernel, int64_t stride, MaxPoolSaved* saved) {
  auto& cpu = dnnl_cpu();
  const auto kind = saved ? prop_kind::forward_training : prop_kind::forward_inference;
  dnnl::pooling_forward::primitive_desc pd(pool_desc(kind, x.shape(), kernel, stride), cpu.engine);
  Tensor y(DType::F32, pooled_shape(x.shape(), kernel, stride));
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(pd.src_desc(), x)}, {DNNL_ARG_DST, mem(pd.dst_desc(), y)}};
  if (saved) {
    saved->x_shape = x.shape();
    saved->workspace = aligned_alloc_shared(std::max<size_t>(pd.workspace_desc().get_size(), 64));
    args.emplace(DNNL_ARG_WORKSPACE, memory(pd.workspace_desc(), cpu.engine, saved->workspace.get()));
  }
  dnnl::pooling_forward(pd).execute(cpu.stream, args);
  cpu.stream.wait();
  return y;
}

Tensor maxpool2d_backward(const Tensor& dy, int64_t kernel, int64_t stride, const MaxPoolSaved& saved) {
  auto& cpu = dnnl_cpu();
  dnnl::pooling_forward::primitive_desc fwd(pool_desc(prop_kind::forward_training, saved.x_shape, kernel, stride),
                                            cpu.engine);
  dnnl::pooling_backward::primitive_desc pd(
      dnnl::pooling_backward::desc(algorithm::pooling_max, plain_f32(saved.x_shape), fwd.dst_desc(), {stride, stride},
                                   {kernel, kernel}, {0, 0}, {0, 0}),
      cpu.engine, fwd);
  if (dy.shape() != pooled_shape(saved.x_shape, kernel, stride))
    fail("max_pool2d backward: dy {} does not match the forward's output", dy.shape_str());
  Tensor dx(DType::F32, saved.x_shape);
  dnnl::pooling_backward(pd).execute(
      cpu.stream, {{DNNL_ARG_DIFF_DST, mem(pd.diff_dst_desc(), dy)},
                   {DNNL_ARG_DIFF_SRC, mem(pd.diff_src_desc(), dx)},
                   {DNNL_ARG_WORKSPACE, memory(fwd.workspace_desc(), cpu.engine, saved.workspace.get())}});
  cpu.stream.wait();
  return dx;
}

Tensor maxpool2d_reference(const Tensor& x, int64_t kernel, int64_t stride) {
  const auto shape = pooled_shape(x.shape(), kernel, stride);
  Tensor y(DType::F32, shape);
  const int64_t h = x.dim(2), w = x.dim(3), oh = shape[2], ow = shape[3];
  for (int64_t p = 0; p < shape[0] * shape[1]; ++p)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t u = 0; u < kernel; ++u)
          for (int64_t v = 0; v < kernel; ++v) m = std::max(m, x.f32()[(p * h + i * stride + u) * w + j * stride + v]);
        y.f32()[(p * oh + i) * ow + j] = m;
      }
  return y;
}

Tensor adaptive_avgpool2d_forward(const Tensor& x, int64_t out_h, int64_t out_w) {
  if (x.ndim() != 4) fail("adaptive_avg_pool2d: input {} must be NCHW", x.shape_str());
  const int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
  Tensor y(DType::F32, {x.dim(0), x.dim(1), out_h, out_w});
  const float* xp = x.f32();
  float* yp = y.f32();
#pragma omp parallel for
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < out_h; ++i)
      for (int64_t j = 0; j < out_w; ++j) {
        const int64_t r0 = window_begin(i, h, out_h), r1 = window_end(i, h, out_h);
        const int64_t c0 = window_begin(j, w, out_w), c1 = window_end(j, w, out_w);
        double sum = 0;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) sum += xp[(p * h + r) * w + c];
        yp[(p * out_h + i) * out_w + j] = float(sum / double((r1 - r0) * (c1 - c0)));
      }
  return y;
}

Tensor adaptive_avgpool2d_backward(const Tensor& dy, const std::vector<int64_t>& x_shape) {
  const int64_t planes = x_shape[0] * x_shape[1], h = x_shape[2], w = x_shape[3];
  const int64_t out_h = dy.dim(2), out_w = dy.dim(3);
  Tensor dx(DType::F32, x_shape);
  const float* g = dy.f32();
  float* dxp = dx.f32();
#pragma omp parallel for
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < out_h; ++i)
      for (int64_t j = 0; j < out_w; ++j) {
        const int64_t r0 = window_begin(i, h, out_h), r1 = window_end(i, h, out_h);
        const int64_t c0 = window_begin(j, w, out_w), c1 = window_end(j, w, out_w);
        const float share = g[(p * out_h + i) * out_w + j] / float((r1 - r0) * (c1 - c0));
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) dxp[(p * h + r) * w + c] += share;
      }
  return dx;
}

}  // namespace lora::vision
