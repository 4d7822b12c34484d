#include "vision/image_io.h"

#include <png.h>
#include <setjmp.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

// jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>

#include "core/atomic_file.h"
#include "core/error.h"

namespace lora::vision {
namespace {

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_format(path, "cannot open the image");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Image decode_png(const std::string& path, const std::vector<uint8_t>& bytes) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size()))
    fail_format(path, "corrupt PNG: {}", png.message);
  Image img;
  img.channels = (png.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
  png.format = img.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  img.height = png.height;
  img.width = png.width;
  img.pixels.resize(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, img.pixels.data(), 0, nullptr)) {
    const std::string msg = png.message;
    png_image_free(&png);
    fail_format(path, "corrupt PNG: {}", msg);
  }
  return img;
}

struct JpegError {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  longjmp(e->jump, 1);
}

Image decode_jpeg(const std::string& path, const std::vector<uint8_t>& bytes) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  err.mgr.emit_message = [](j_common_ptr, int) {};  // warnings (e.g. premature end) become errors below
  Image img;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    fail_format(path, "corrupt JPEG: {}", err.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  img.channels = cinfo.output_components;
  img.height = cinfo.output_height;
  img.width = cinfo.output_width;
  img.pixels.resize(size_t(img.channels * img.height * img.width));
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = img.pixels.data() + size_t(cinfo.output_scanline) * size_t(img.width * img.channels);
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  const bool truncated = err.mgr.num_warnings > 0;
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  if (truncated) fail_format(path, "corrupt JPEG: the data is truncated or damaged");
  return img;
}

// torch.nn.functional.interpolate(mode="bilinear", align_corners=False) of one CHW plane set.
std::vector<float> resize_bilinear(const std::vector<float>& src, int64_t c, int64_t h, int64_t w, int64_t oh,
                                   int64_t ow) {
  std::vector<float> out(size_t(c * oh * ow));
  const double sy = double(h) / double(oh), sx = double(w) / double(ow);
  for (int64_t i = 0; i < oh; ++i) {
    const double fy = std::max(0.0, (i + 0.5) * sy - 0.5);
    const int64_t y0 = std::min<int64_t>(int64_t(fy), h - 1), y1 = std::min<int64_t>(y0 + 1, h - 1);
    const double wy = fy - double(y0);
    for (int64_t j = 0; j < ow; ++j) {
      const double fx = std::max(0.0, (j + 0.5) * sx - 0.5);
      const int64_t x0 = std::min<int64_t>(int64_t(fx), w - 1), x1 = std::min<int64_t>(x0 + 1, w - 1);
      const double wx = fx - double(x0);
      for (int64_t ch = 0; ch < c; ++ch) {
        const float* p = src.data() + ch * h * w;
        const double top = p[y0 * w + x0] * (1 - wx) + p[y0 * w + x1] * wx;
        const double bottom = p[y1 * w + x0] * (1 - wx) + p[y1 * w + x1] * wx;
        out[size_t((ch * oh + i) * ow + j)] = float(top * (1 - wy) + bottom * wy);
      }
    }
  }
  return out;
}

Tensor transform(std::vector<float> chw, int64_t c, int64_t h, int64_t w, const Preprocess& p) {
  if (p.resize > 0 && std::min(h, w) != p.resize) {
    const int64_t oh = h <= w ? p.resize : int64_t(double(p.resize) * double(h) / double(w));
    const int64_t ow = h <= w ? int64_t(double(p.resize) * double(w) / double(h)) : p.resize;
    chw = resize_bilinear(chw, c, h, w, oh, ow);
    h = oh, w = ow;
  }
  int64_t top = 0, left = 0, oh = h, ow = w;
  if (p.crop > 0) {
    if (p.crop > h || p.crop > w) fail("center crop {} is larger than the {}x{} image", p.crop, h, w);
    top = int64_t(std::lround(double(h - p.crop) / 2.0));
    left = int64_t(std::lround(double(w - p.crop) / 2.0));
    oh = ow = p.crop;
  }
  Tensor t(DType::F32, {c, oh, ow});
  for (int64_t ch = 0; ch < c; ++ch) {
    const float mean = p.mean.empty() ? 0.0f : p.mean[size_t(ch)], std = p.std.empty() ? 1.0f : p.std[size_t(ch)];
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j)
        t.f32()[(ch * oh + i) * ow + j] = (chw[size_t((ch * h + top + i) * w + left + j)] - mean) / std;
  }
  return t;
}

}  // namespace

Image read_image(const std::string& path) {
  const std::vector<uint8_t> bytes = file_bytes(path);
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPng, 8) == 0) return decode_png(path, bytes);
  if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) return decode_jpeg(path, bytes);
  fail_format(path, "not a PNG or JPEG image");
}

Tensor preprocess_image(const Image& image, const Preprocess& p, int64_t channels, const std::string& path) {
  if (image.channels != channels)
    fail_format(path, "the image has {} channel{}, the model takes {}", image.channels, image.channels == 1 ? "" : "s",
                channels);
  const int64_t c = image.channels, h = image.height, w = image.width;
  std::vector<float> chw(size_t(c * h * w));
  for (int64_t i = 0; i < h * w; ++i)
    for (int64_t ch = 0; ch < c; ++ch) chw[size_t(ch * h * w + i)] = float(image.pixels[size_t(i * c + ch)]) / 255.0f;
  return transform(std::move(chw), c, h, w, p);
}

Tensor preprocess_gray(const uint8_t* pixels, int64_t height, int64_t width, const Preprocess& p) {
  std::vector<float> chw(size_t(height * width));
  for (int64_t i = 0; i < height * width; ++i) chw[size_t(i)] = float(pixels[i]) / 255.0f;
  return transform(std::move(chw), 1, height, width, p);
}

void write_png(const std::string& path, const Image& image) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  png.width = png_uint_32(image.width);
  png.height = png_uint_32(image.height);
  png.format = image.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&png, nullptr, &size, 0, image.pixels.data(), 0, nullptr))
    fail_format(path, "cannot encode PNG: {}", png.message);
  std::string bytes(size, '\0');
  if (!png_image_write_to_memory(&png, bytes.data(), &size, 0, image.pixels.data(), 0, nullptr))
    fail_format(path, "cannot encode PNG: {}", png.message);
  write_file_atomic(path, bytes);
}

}  // namespace lora::vision
