#pragma once
// Writing a cairo image surface as a PNG file atomically (temp file + rename), for the training plots.
#include <string>

typedef struct _cairo_surface cairo_surface_t;

namespace lora {

// Takes ownership of the surface (destroyed on return or throw). Throws lora::Error naming the path when
// the PNG cannot be written or moved into place.
void write_png_atomic(cairo_surface_t* surface, const std::string& path);

}  // namespace lora
