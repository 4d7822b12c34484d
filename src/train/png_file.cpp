#include "train/png_file.h"

#include <cairo.h>

#include <cstdio>
#include <filesystem>

#include "core/error.h"

namespace lora {

void write_png_atomic(cairo_surface_t* surface, const std::string& path) {
  const std::string tmp = path + ".tmp";
  const cairo_status_t status = cairo_surface_write_to_png(surface, tmp.c_str());
  cairo_surface_destroy(surface);
  if (status != CAIRO_STATUS_SUCCESS) {
    std::remove(tmp.c_str());
    fail("{}: cannot write the PNG: {}", path, cairo_status_to_string(status));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail("{}: cannot move the PNG into place: {}", path, ec.message());
  }
}

}  // namespace lora
