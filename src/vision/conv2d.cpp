#include "vision/conv2d.h"

#include <cstring>

#include "core/error.h"
#include "vision/dnnl_cpu.h"

namespace lora::vision {
namespace {

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;

struct ConvDescs {
  memory::desc src, weights, bias, dst;
  memory::dims strides, padding;
};

void check_input(const Conv2dShape& s, const Tensor& x, const Tensor& weight) {
  if (x.ndim() != 4 || x.dim(1) != s.in_channels)
    fail("conv2d: input {} does not have {} channels in NCHW", x.shape_str(), s.in_channels);
  if (weight.shape() != std::vector<int64_t>{s.out_channels, s.in_channels, s.kernel_h, s.kernel_w})
    fail("conv2d: weight {} is not [{}, {}, {}, {}]", weight.shape_str(), s.out_channels, s.in_channels, s.kernel_h,
         s.kernel_w);
}

ConvDescs descs(const Conv2dShape& s, const std::vector<int64_t>& x_shape) {
  const int64_t n = x_shape[0], h = x_shape[2], w = x_shape[3];
  const int64_t oh = s.out_size(h, s.kernel_h), ow = s.out_size(w, s.kernel_w);
  if (oh <= 0 || ow <= 0) fail("conv2d: a {}x{} input is smaller than the {}x{} kernel", h, w, s.kernel_h, s.kernel_w);
  return {plain_f32(x_shape), plain_f32({s.out_channels, s.in_channels, s.kernel_h, s.kernel_w}),
          plain_f32({s.out_channels}), plain_f32({n, s.out_channels, oh, ow}),
          {s.stride, s.stride}, {s.padding, s.padding}};
}

dnnl::convolution_forward::primitive_desc forward_pd(const ConvDescs& d, bool with_bias, prop_kind kind) {
  auto& cpu = dnnl_cpu();
  if (with_bias)
    return {dnnl::convolution_forward::desc(kind, algorithm::convolution_direct, d.src, d.weights, d.bias, d.dst,
                                            d.strides, d.padding, d.padding),
            cpu.engine};
  return {dnnl::convolution_forward::desc(kind, algorithm::convolution_direct, d.src, d.weights, d.dst, d.strides,
                                          d.padding, d.padding),
          cpu.engine};
}

memory mem(const memory::desc& md, const Tensor& t) {
  return memory(md, dnnl_cpu().engine, const_cast<void*>(t.data()));
}

}  // namespace

Tensor conv2d_forward(const Conv2dShape& s, const Tensor& x, const Tensor& weight, const Tensor* bias) {
  check_input(s, x, weight);
  const ConvDescs d = descs(s, x.shape());
  const memory::dims out_dims = d.dst.dims();
  Tensor y(DType::F32, std::vector<int64_t>(out_dims.begin(), out_dims.end()));
  auto& cpu = dnnl_cpu();
  const auto pd = forward_pd(d, bias != nullptr, prop_kind::forward_training);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, mem(d.src, x)}, {DNNL_ARG_WEIGHTS, mem(d.weights, weight)}, {DNNL_ARG_DST, mem(d.dst, y)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, mem(d.bias, *bias));
  dnnl::convolution_forward(pd).execute(cpu.stream, args);
  cpu.stream.wait();
  return y;
}

void conv2d_backward_data(const Conv2dShape& s, const Tensor& dy, const Tensor& weight, Tensor& dx, bool accumulate) {
  if (dx.ndim() != 4 || dx.dim(1) != s.in_channels)
    fail("conv2d_backward_data: dx {} is not an NCHW input of {} channels", dx.shape_str(), s.in_channels);
  const ConvDescs d = descs(s, dx.shape());
  const memory::dims out_dims = d.dst.dims();
  if (dy.shape() != std::vector<int64_t>(out_dims.begin(), out_dims.end()))
    fail("conv2d_backward_data: dy {} does not match the convolution's output", dy.shape_str());
  auto& cpu = dnnl_cpu();
  const auto fwd = forward_pd(d, false, prop_kind::forward_training);
  dnnl::convolution_backward_data::primitive_desc pd(
      dnnl::convolution_backward_data::desc(algorithm::convolution_direct, d.src, d.weights, d.dst, d.strides,
                                            d.padding, d.padding),
      cpu.engine, fwd);
  // oneDNN 2.6 backward primitives take no sum post-op, so an accumulated dx goes through a temporary.
  Tensor out = accumulate ? Tensor(DType::F32, dx.shape()) : dx;
  dnnl::convolution_backward_data(pd).execute(
      cpu.stream, {{DNNL_ARG_DIFF_DST, mem(d.dst, dy)}, {DNNL_ARG_WEIGHTS, mem(d.weights, weight)},
                   {DNNL_ARG_DIFF_SRC, mem(d.src, out)}});
  cpu.stream.wait();
  if (accumulate) {
    float* a = dx.f32();
    const float* b = out.f32();
    for (int64_t i = 0, n = dx.numel(); i < n; ++i) a[i] += b[i];
  }
}

void conv2d_backward_weights(const Conv2dShape& s, const Tensor& x, const Tensor& dy, Tensor& dweight,
                             Tensor* dbias) {
  check_input(s, x, dweight);
  const ConvDescs d = descs(s, x.shape());
  auto& cpu = dnnl_cpu();
  const auto fwd = forward_pd(d, dbias != nullptr, prop_kind::forward_training);
  auto bwd_desc = dbias ? dnnl::convolution_backward_weights::desc(algorithm::convolution_direct, d.src, d.weights,
                                                                   d.bias, d.dst, d.strides, d.padding, d.padding)
                        : dnnl::convolution_backward_weights::desc(algorithm::convolution_direct, d.src, d.weights,
                                                                   d.dst, d.strides, d.padding, d.padding);
  dnnl::convolution_backward_weights::primitive_desc pd(bwd_desc, cpu.engine, fwd);
  Tensor dw(DType::F32, dweight.shape());
  Tensor db = dbias ? Tensor(DType::F32, dbias->shape()) : Tensor();
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, mem(d.src, x)}, {DNNL_ARG_DIFF_DST, mem(d.dst, dy)}, {DNNL_ARG_DIFF_WEIGHTS, mem(d.weights, dw)}};
  if (dbias) args.emplace(DNNL_ARG_DIFF_BIAS, mem(d.bias, db));
  dnnl::convolution_backward_weights(pd).execute(cpu.stream, args);
  cpu.stream.wait();
  float* g = dweight.f32();
  for (int64_t i = 0, n = dw.numel(); i < n; ++i) g[i] += dw.f32()[i];
  if (dbias)
    for (int64_t i = 0, n = db.numel(); i < n; ++i) dbias->f32()[i] += db.f32()[i];
}

Tensor conv2d_reference(const Conv2dShape& s, const Tensor& x, const Tensor& weight, const Tensor* bias) {
  check_input(s, x, weight);
  const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
  const int64_t oh = s.out_size(h, s.kernel_h), ow = s.out_size(w, s.kernel_w), o = s.out_channels;
  Tensor y(DType::F32, {n, o, oh, ow});
  const float* xp = x.f32();
  const float* wp = weight.f32();
  float* yp = y.f32();
  for (int64_t b = 0; b < n; ++b)
    for (int64_t oc = 0; oc < o; ++oc)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double acc = bias ? bias->f32()[oc] : 0.0;
          for (int64_t ic = 0; ic < c; ++ic)
            for (int64_t u = 0; u < s.kernel_h; ++u)
              for (int64_t v = 0; v < s.kernel_w; ++v) {
                const int64_t yi = i * s.stride + u - s.padding, xj = j * s.stride + v - s.padding;
                if (yi < 0 || yi >= h || xj < 0 || xj >= w) continue;
                acc += double(wp[((oc * c + ic) * s.kernel_h + u) * s.kernel_w + v]) *
                       xp[((b * c + ic) * h + yi) * w + xj];
              }
          yp[((b * o + oc) * oh + i) * ow + j] = float(acc);
        }
  return y;
}

}  // namespace lora::vision
