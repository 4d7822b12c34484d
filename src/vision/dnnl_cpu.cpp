#include "vision/dnnl_cpu.h"

namespace lora::vision {

DnnlCpu& dnnl_cpu() {
  static DnnlCpu cpu;
  return cpu;
}

dnnl::memory::desc plain_f32(const std::vector<int64_t>& dims) {
  using tag = dnnl::memory::format_tag;
  const tag t = dims.size() == 4 ? tag::nchw : dims.size() == 2 ? tag::nc : tag::a;
  return dnnl::memory::desc(dnnl::memory::dims(dims.begin(), dims.end()), dnnl::memory::data_type::f32, t);
}

}  // namespace lora::vision
