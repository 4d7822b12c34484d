#pragma once
// The oneDNN CPU engine and stream the vision layers run their convolution and pooling primitives on.
// oneDNN keeps its own primitive cache, so rebuilding a primitive of a shape already seen is cheap.
#include <oneapi/dnnl/dnnl.hpp>

#include <vector>

namespace lora::vision {

struct DnnlCpu {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};
DnnlCpu& dnnl_cpu();

// An NCHW / OIHW f32 memory descriptor of the given dims.
dnnl::memory::desc plain_f32(const std::vector<int64_t>& dims);

}  // namespace lora::vision
