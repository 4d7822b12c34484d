#pragma once
// Images in: PNG (libpng) and JPEG (libjpeg-turbo) decoded to 8-bit pixels, then torchvision's transforms as
// the model folder's config.json asks (vgg_config.h Preprocess):
//   ToTensor                  x = pixel / 255, CHW
//   Resize(resize)            the shorter side to `resize`, the other to floor(resize · long / short) as torchvision,
//                             bilinear with half-pixel centres (torch's interpolate, align_corners = False,
//                             without antialiasing)
//   CenterCrop(crop)          top = round((H − crop) / 2), left likewise
//   Normalize(mean, std)      (x − mean[c]) / std[c]
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "vision/vgg_config.h"

namespace lora::vision {

struct Image {
  int64_t channels = 0, height = 0, width = 0;
  std::vector<uint8_t> pixels;  // HWC
};

// By content (PNG signature or JPEG SOI marker), not by extension. FormatError naming the file when it is
// neither or is corrupt. Palette and 16-bit PNGs are expanded to 8 bits; alpha is dropped.
Image read_image(const std::string& path);

// The model's input for one image: [C, H, W] f32. `channels` is the model's in_channels: an image of another
// channel count is an error naming `path` (no silent conversion between gray and colour).
Tensor preprocess_image(const Image& image, const Preprocess& p, int64_t channels, const std::string& path);

// The pixels of an 8-bit single-channel image (as IDX holds) under the same transforms: [1, H, W].
Tensor preprocess_gray(const uint8_t* pixels, int64_t height, int64_t width, const Preprocess& p);

// Writes a PNG (8-bit gray or RGB) atomically: for tests and the confusion-matrix picture's callers.
void write_png(const std::string& path, const Image& image);

}  // namespace lora::vision
