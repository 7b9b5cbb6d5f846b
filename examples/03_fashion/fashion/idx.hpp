#pragma once
// Reading the IDX files of (Fashion-)MNIST, gzipped as Debian's dataset-fashion-mnist ships them
// (/usr/share/datasets/fashion-mnist/*-ubyte.gz), through zlib. Every size is checked before it
// is used: the magic number (unsigned bytes, 1 or 3 dimensions), each dimension, and the file's
// length against the product of the dimensions, so a truncated or foreign file is an io_error
// naming the file and what was wrong, never a short read.

#include <zlib.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <ddm/core/error.hpp>

namespace fashion {

/// Values of one Fashion-MNIST image (28 x 28 pixels).
inline constexpr std::ptrdiff_t image_values = 784;

/// An IDX file's unsigned bytes: dims (e.g. {N, 28, 28} or {N}) and N * prod(rest) values.
struct idx_data {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> values;
};

namespace idx_format {

[[noreturn]] inline void fail_idx(const std::string& path, const std::string& problem) {
  throw ddm::io_error(ddm::concat("fashion::read_idx: '", path, "': ", problem));
}

}  // namespace idx_format

/// Reads a (gzipped or plain: zlib reads both) IDX file of unsigned bytes with `expected_rank`
/// dimensions (3 for images, 1 for labels).
inline idx_data read_idx(const std::filesystem::path& path, std::size_t expected_rank) {
  const std::string p = path.string();
  std::unique_ptr<gzFile_s, int (*)(gzFile)> f(gzopen(p.c_str(), "rb"), gzclose);
  if (!f) idx_format::fail_idx(p, "cannot be opened");
  auto read_exact = [&](void* dst, unsigned n, const char* what) {
    const int got = gzread(f.get(), dst, n);
    if (got < 0) idx_format::fail_idx(p, std::string("is not a readable gzip stream (reading the ") + what + ")");
    if (static_cast<unsigned>(got) != n)
      idx_format::fail_idx(p, ddm::concat("ends after ", got, " of the ", n, " bytes of the ", what, " (truncated)"));
  };
  std::array<std::uint8_t, 4> magic{};
  read_exact(magic.data(), 4, "magic number");
  // 0x00 0x00 <type> <rank>; type 0x08 = unsigned byte.
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08)
    idx_format::fail_idx(p, ddm::concat("magic number ", int(magic[0]), " ", int(magic[1]), " ", int(magic[2]), " ",
                                            int(magic[3]), " is not that of an IDX file of unsigned bytes (0 0 8 rank)"));
  if (magic[3] != expected_rank)
    idx_format::fail_idx(p, ddm::concat("has ", int(magic[3]), " dimensions, expected ", expected_rank));
  idx_data out;
  std::uint64_t total = 1;
  // 2^31 values is far above any IDX file this reads, and keeps every size an int for gzread.
  constexpr std::uint64_t max_values = std::uint64_t{1} << 31;
  for (std::size_t i = 0; i < expected_rank; ++i) {
    std::array<std::uint8_t, 4> b{};
    read_exact(b.data(), 4, "dimensions");
    const std::uint32_t dim = (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
    if (dim == 0) idx_format::fail_idx(p, ddm::concat("dimension ", i, " is 0"));
    total *= dim;
    if (total > max_values) idx_format::fail_idx(p, ddm::concat("declares more than ", max_values, " values"));
    out.dims.push_back(dim);
  }
  out.values.resize(static_cast<std::size_t>(total));
  read_exact(out.values.data(), static_cast<unsigned>(total), "values");
  std::uint8_t extra = 0;
  if (gzread(f.get(), &extra, 1) != 0)
    idx_format::fail_idx(p, ddm::concat("has bytes after the ", total, " values its header declares"));
  return out;
}

/// Images of an IDX file as (N, H*W) floats in [0, 1] (value / 255), checked to be 28 x 28.
inline std::vector<float> read_idx_images(const std::filesystem::path& path, std::size_t* count) {
  const auto d = read_idx(path, 3);
  if (d.dims[1] != 28 || d.dims[2] != 28)
    idx_format::fail_idx(path.string(), ddm::concat("images are ", d.dims[1], " x ", d.dims[2], ", expected 28 x 28"));
  std::vector<float> out(d.values.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(d.values[i]) / 255.0f;
  *count = d.dims[0];
  return out;
}

/// Labels of an IDX file, each checked to be < classes.
inline std::vector<int> read_idx_labels(const std::filesystem::path& path, int classes) {
  const auto d = read_idx(path, 1);
  std::vector<int> out(d.values.size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (d.values[i] >= classes)
      idx_format::fail_idx(path.string(), ddm::concat("label ", int(d.values[i]), " at index ", i, " is not in [0, ",
                                                          classes, ")"));
    out[i] = d.values[i];
  }
  return out;
}

}  // namespace fashion
