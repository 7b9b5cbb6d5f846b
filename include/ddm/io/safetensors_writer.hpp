#pragma once
// Writing safetensors files: for tests, fixtures and small tools.
//
// Requires nlohmann_json: link the CMake target ddm::json.
//
// As the reference writer does, tensors are laid out by decreasing element size (then by name)
// and the header is padded with spaces to a multiple of 8 bytes, so every tensor's data is
// naturally aligned in the file. Values given as float or double are converted to the stored
// dtype (F32, F64, F16 or BF16; 16-bit formats round to nearest, ties to even).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ddm/core/error.hpp"
#include "ddm/io/dtype.hpp"
#include "ddm/io/float16.hpp"

namespace ddm::io {

class safetensors_writer {
 public:
  /// Adds a "__metadata__" entry.
  void set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }

  /// Adds a tensor whose bytes are given as stored (little-endian, row-major).
  void add_raw(std::string name, dtype type, std::vector<std::uint64_t> shape, std::span<const std::byte> bytes) {
    check_name_(name);
    std::uint64_t elements = 1;
    for (const auto d : shape) elements *= d;
    const std::uint64_t expected = elements * bits_of(type) / 8;
    if (bytes.size() != expected)
      throw argument_error(ddm::concat("ddm::io::safetensors_writer::add_raw: tensor '", name, "' has ",
                                               bytes.size(), " bytes, expected ", expected, " for its shape and dtype ",
                                               name_of(type)));
    entries_.push_back({std::move(name), type, std::move(shape), {bytes.begin(), bytes.end()}});
  }

  /// Adds a tensor from float or double values, stored as `stored_as` (F32, F64, F16 or BF16).
  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  void add(std::string name, std::vector<std::uint64_t> shape, std::span<const T> values,
           dtype stored_as = dtype::f32) {
    std::uint64_t elements = 1;
    for (const auto d : shape) elements *= d;
    if (values.size() != elements)
      throw argument_error(ddm::concat("ddm::io::safetensors_writer::add: tensor '", name, "' has ",
                                               values.size(), " values, expected ", elements, " for its shape"));
    std::vector<std::byte> bytes;
    switch (stored_as) {
      case dtype::f32:
        bytes = encode_(values, [](T v) { return static_cast<float>(v); });
        break;
      case dtype::f64:
        bytes = encode_(values, [](T v) { return static_cast<double>(v); });
        break;
      case dtype::f16:
        bytes = encode_(values, [](T v) { return float_to_f16(static_cast<float>(v)); });
        break;
      case dtype::bf16:
        bytes = encode_(values, [](T v) { return float_to_bf16(static_cast<float>(v)); });
        break;
      default:
        throw argument_error(ddm::concat("ddm::io::safetensors_writer::add: tensor '", name,
                                                 "': argument 'stored_as' = ", name_of(stored_as),
                                                 ", expected F32, F64, F16 or BF16 (use add_raw for other dtypes)"));
    }
    add_raw(std::move(name), stored_as, std::move(shape), bytes);
  }
  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  void add(std::string name, std::vector<std::uint64_t> shape, const std::vector<T>& values,
           dtype stored_as = dtype::f32) {
    add(std::move(name), std::move(shape), std::span<const T>(values), stored_as);
  }

  /// The complete file.
  [[nodiscard]] std::vector<std::byte> to_bytes() const {
    std::vector<const entry*> order;
    order.reserve(entries_.size());
    for (const auto& e : entries_) order.push_back(&e);
    std::stable_sort(order.begin(), order.end(), [](const entry* a, const entry* b) {
      const auto ba = bits_of(a->type);
      const auto bb = bits_of(b->type);
      return ba != bb ? ba > bb : a->name < b->name;
    });
    nlohmann::json header = nlohmann::json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::uint64_t offset = 0;
    for (const auto* e : order) {
      header[e->name] = {{"dtype", std::string(name_of(e->type))},
                         {"shape", e->shape},
                         {"data_offsets", {offset, offset + e->bytes.size()}}};
      offset += e->bytes.size();
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::vector<std::byte> out(8 + text.size() + offset);
    const std::uint64_t n = text.size();
    std::memcpy(out.data(), &n, 8);
    std::memcpy(out.data() + 8, text.data(), text.size());
    std::size_t at = 8 + text.size();
    for (const auto* e : order) {
      if (!e->bytes.empty()) std::memcpy(out.data() + at, e->bytes.data(), e->bytes.size());
      at += e->bytes.size();
    }
    return out;
  }

  /// Writes the file; ddm::io_error when it cannot be written.
  void write(const std::filesystem::path& path) const {
    const auto bytes = to_bytes();
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out || !out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size())))
      throw io_error(ddm::concat("ddm::io::safetensors_writer::write: cannot write '", path.string(), "'"));
  }

 private:
  struct entry {
    std::string name;
    dtype type;
    std::vector<std::uint64_t> shape;
    std::vector<std::byte> bytes;
  };

  void check_name_(const std::string& name) const {
    if (name == "__metadata__")
      throw argument_error("ddm::io::safetensors_writer: argument 'name' = __metadata__, expected a tensor name "
                           "(the key is reserved for metadata)");
    for (const auto& e : entries_)
      if (e.name == name)
        throw argument_error(ddm::concat("ddm::io::safetensors_writer: argument 'name' = ", name,
                                                 ", expected a name not added before"));
  }

  template <class T, class Encode>
  static std::vector<std::byte> encode_(std::span<const T> values, Encode encode) {
    using stored = decltype(encode(T{}));
    std::vector<std::byte> bytes(values.size() * sizeof(stored));
    for (std::size_t i = 0; i < values.size(); ++i) {
      const stored s = encode(values[i]);
      std::memcpy(bytes.data() + i * sizeof(stored), &s, sizeof(stored));
    }
    return bytes;
  }

  std::vector<entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace ddm::io
