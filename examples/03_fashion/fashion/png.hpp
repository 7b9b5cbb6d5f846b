#pragma once
// A grid of 28 x 28 grayscale images (values in [0, 1]) as an 8-bit PNG, through libpng. Needs
// libpng (Debian: libpng-dev); the ddm_fashion target defines DDM_FASHION_PNG=1 when it has it.

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <ddm/core/batch.hpp>
#include <ddm/core/error.hpp>

namespace fashion {

/// Writes the rows of images (N, 784) as a grid of `columns` images, 2-pixel gaps, to path.
inline void write_png_grid(const std::filesystem::path& path, ddm::batch_view<const float> images, int columns) {
  constexpr const char* where = "fashion::write_png_grid";
  if (images.cols() != 784) ddm::throw_error<ddm::shape_error>(where, ": images have ", images.cols(), " values, expected 784 (28 x 28)");
  if (images.rows() < 1) ddm::fail_argument(where, "images.rows()", images.rows(), ">= 1");
  if (columns < 1) ddm::fail_argument(where, "columns", columns, ">= 1");
  constexpr int side = 28, gap = 2;
  const int n = static_cast<int>(images.rows());
  const int cols = std::min(columns, n);
  const int rows = (n + cols - 1) / cols;
  const int width = cols * (side + gap) + gap, height = rows * (side + gap) + gap;
  std::vector<png_byte> pixels(static_cast<std::size_t>(width) * static_cast<std::size_t>(height), 255);
  for (int i = 0; i < n; ++i) {
    const int x0 = gap + (i % cols) * (side + gap), y0 = gap + (i / cols) * (side + gap);
    for (int y = 0; y < side; ++y)
      for (int x = 0; x < side; ++x) {
        const float v = std::clamp(images(i, y * side + x), 0.0f, 1.0f);
        // Fashion-MNIST is light on dark; kept as is.
        pixels[static_cast<std::size_t>(y0 + y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x0 + x)] =
            static_cast<png_byte>(std::lround(v * 255.0f));
      }
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.string().c_str(), "wb"), std::fclose);
  if (!f) throw ddm::io_error(ddm::concat(where, ": cannot write '", path.string(), "'"));
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_write_struct(&png, &info);
    throw ddm::io_error(ddm::concat(where, ": libpng could not start"));
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw ddm::io_error(ddm::concat(where, ": libpng failed writing '", path.string(), "'"));
  }
  png_init_io(png, f.get());
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8, PNG_COLOR_TYPE_GRAY,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y) png_write_row(png, pixels.data() + static_cast<std::size_t>(y) * static_cast<std::size_t>(width));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
}

}  // namespace fashion
