// safetensors: the header (length, JSON entries, dtypes, shapes, data_offsets) and every tensor's data,
// read back through load() and summed so that an out-of-bounds view is touched.
#include "formats/safetensors.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = lora::fuzz::write_input("model.safetensors", {reinterpret_cast<const char*>(data), size});
  lora::fuzz::expect_clean([&] {
    const lora::SafetensorsFile f = lora::SafetensorsFile::open(path);
    volatile uint8_t sink = 0;
    for (const lora::SafetensorsTensorInfo& info : f.tensors()) {
      if (!info.dtype) continue;
      const lora::Tensor t = f.load(info.name);
      const uint8_t* bytes = static_cast<const uint8_t*>(t.data());
      for (size_t i = 0; i < t.nbytes(); ++i) sink = sink + bytes[i];
    }
  });
  return 0;
}
