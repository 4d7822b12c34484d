#include "vision/classifier_pass.h"

#include "core/error.h"
#include "vision/pointwise.h"

namespace lora::vision {
namespace {

Conv2dParams conv_params(const VggLayer& l, AdaptedLayer* a) {
  Conv2dParams p{l.spec.conv, &l.weight, &l.bias};
  if (!a) return p;
  if (a->trained_copy) p.weight = &a->weight, p.bias = &a->bias, p.weight_grad = &a->weight_grad, p.bias_grad = &a->bias_grad;
  p.lora = a->conv.get();
  return p;
}

LinearParams linear_params(const VggLayer& l, AdaptedLayer* a) {
  LinearParams p{&l.weight, &l.bias};
  if (!a) return p;
  if (a->trained_copy) p.weight = &a->weight, p.bias = &a->bias, p.weight_grad = &a->weight_grad, p.bias_grad = &a->bias_grad;
  p.lora = a->linear.get();
  return p;
}

}  // namespace

Tensor classifier_forward(const VggModel& model, ClassifierAdapter* adapter, const Tensor& x_in, bool training,
                          std::mt19937_64* rng, PassSaved* saved) {
  if (x_in.ndim() != 4 || x_in.dim(1) != model.config.in_channels)
    fail("classifier input {} is not N x {} x H x W", x_in.shape_str(), model.config.in_channels);
  if (training && !rng) fail("classifier_forward: training needs an rng for dropout");
  const size_t n_layers = model.layers.size();
  if (saved) {
    saved->inputs.assign(n_layers, Tensor());
    saved->convs.assign(n_layers, {});
    saved->linears.assign(n_layers, {});
    saved->pools.assign(n_layers, {});
    saved->dropout_keep.assign(n_layers, Tensor());
  }
  Tensor x = x_in;
  for (size_t i = 0; i < n_layers; ++i) {
    const VggLayer& l = model.layers[i];
    AdaptedLayer* a = adapter ? &adapter->layers[i] : nullptr;
    if (saved) saved->inputs[i] = x;
    switch (l.spec.kind) {
      case LayerKind::Conv2d:
        x = adapted_conv2d_forward(conv_params(l, a), x, saved ? &saved->convs[i] : nullptr);
        break;
      case LayerKind::BatchNorm2d:
        channel_affine_forward(l.bn, x);
        break;
      case LayerKind::ReLU:
        relu_forward(x);
        break;
      case LayerKind::MaxPool2d:
        x = maxpool2d_forward(x, 2, 2, saved ? &saved->pools[i] : nullptr);
        break;
      case LayerKind::AdaptiveAvgPool2d:
        // Already the requested size (VGG at 224x224): torch's adaptive pool is then the identity.
        if (x.dim(2) != model.config.avgpool_h || x.dim(3) != model.config.avgpool_w)
          x = adaptive_avgpool2d_forward(x, model.config.avgpool_h, model.config.avgpool_w);
        break;
      case LayerKind::Flatten:
        x = x.reshape({x.dim(0), x.numel() / x.dim(0)});
        break;
      case LayerKind::Dropout:
        if (training && model.config.dropout > 0) {
          if (!saved) fail("classifier_forward: training needs saved activations");
          dropout_forward(x, model.config.dropout, *rng, saved->dropout_keep[i]);
        }
        break;
      case LayerKind::Linear: {
        Tensor y(DType::F32, {x.dim(0), l.spec.out_features});
        adapted_linear_forward(linear_params(l, a), x, y, saved ? &saved->linears[i] : nullptr, rng);
        x = y;
        break;
      }
    }
  }
  return x;
}

void classifier_backward(const VggModel& model, ClassifierAdapter& adapter, const Tensor& dlogits, PassSaved& saved) {
  const int lowest = adapter.lowest_trainable_layer();
  Tensor g = dlogits.clone();
  for (int i = int(model.layers.size()) - 1; i >= lowest; --i) {
    const VggLayer& l = model.layers[size_t(i)];
    AdaptedLayer* a = &adapter.layers[size_t(i)];
    const Tensor& x = saved.inputs[size_t(i)];
    const bool need_dx = i > lowest;
    switch (l.spec.kind) {
      case LayerKind::Conv2d:
        g = adapted_conv2d_backward(conv_params(l, a), x, g, saved.convs[size_t(i)], need_dx);
        break;
      case LayerKind::BatchNorm2d:
        channel_affine_backward(l.bn, g);
        break;
      case LayerKind::ReLU:
        relu_backward(x, g);
        break;
      case LayerKind::MaxPool2d:
        g = maxpool2d_backward(g, 2, 2, saved.pools[size_t(i)]);
        break;
      case LayerKind::AdaptiveAvgPool2d:
        if (x.dim(2) != g.dim(2) || x.dim(3) != g.dim(3)) g = adaptive_avgpool2d_backward(g, x.shape());
        break;
      case LayerKind::Flatten:
        g = g.reshape(x.shape());
        break;
      case LayerKind::Dropout:
        if (!saved.dropout_keep[size_t(i)].empty()) dropout_backward(g, model.config.dropout, saved.dropout_keep[size_t(i)]);
        break;
      case LayerKind::Linear: {
        Tensor dx = need_dx ? Tensor(DType::F32, x.shape()) : Tensor();
        adapted_linear_backward(linear_params(l, a), x, g, saved.linears[size_t(i)], need_dx ? &dx : nullptr, false);
        g = dx;
        break;
      }
    }
  }
}

}  // namespace lora::vision
