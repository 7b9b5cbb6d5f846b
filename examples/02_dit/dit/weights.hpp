#pragma once
// Loading model weights from a safetensors checkpoint into a memory space.
//
// Requires nlohmann_json (ddm::json) through ddm/io/safetensors.hpp.
//
// Every tensor is read with the shape the configuration implies; a missing tensor or a wrong
// shape is a ddm::io_error naming the file and the tensor. After loading, tensors the model did
// not use are an error too (strict mode, the default): a checkpoint with more blocks, or of
// another architecture, is a configuration mistake that should not load silently.

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <ddm/core/batch.hpp>
#include <ddm/core/checked.hpp>
#include <ddm/core/error.hpp>
#include <ddm/io/float16.hpp>
#include <ddm/io/safetensors.hpp>

#include "dit/backend.hpp"
#include "dit/config.hpp"

namespace dit {

/// A PyTorch Linear: weight (out, in) in the reader's weight_storage (float in `weight`, or the
/// 16-bit words of bf16 / f16 values in `weight16`), bias (1, out) float (empty when the layer
/// has none).
template <class Space>
struct linear_weights {
  batch<float, Space> weight;
  batch<std::uint16_t, Space> weight16;
  batch<float, Space> bias;
  weight_storage storage = weight_storage::f32;

  [[nodiscard]] const float* bias_data() const noexcept { return bias.empty() ? nullptr : bias.data(); }
  [[nodiscard]] index_t in() const noexcept { return storage == weight_storage::f32 ? weight.cols() : weight16.cols(); }
  [[nodiscard]] index_t out() const noexcept { return storage == weight_storage::f32 ? weight.rows() : weight16.rows(); }
  /// The weight matrix, for backend<Space>::linear.
  [[nodiscard]] weight_view<Space> view() const noexcept {
    if (storage == weight_storage::f32) return weight.cview();
    return {weight16.data(), weight16.rows(), weight16.cols(), weight16.cols(), storage};
  }
};

template <class Space>
class weight_reader {
 public:
  /// Reads from `file` into memory of `ctx`; matrices of Linear layers in `storage` (float only
  /// on the host).
  weight_reader(const ddm::io::safetensors_file& file, const ddm::execution_context<Space>& ctx,
                weight_storage storage = weight_storage::f32)
      : file_(file), ctx_(ctx), storage_(storage) {
    if (Space::host_accessible && storage != weight_storage::f32)
      throw ddm::argument_error(ddm::concat("dit::weight_reader: argument 'storage' is ", to_string(storage),
                                                    " for '", file.label(), "', expected f32: the host backend keeps "
                                                    "float weights (bf16 / f16 storage is for the CUDA backend)"));
  }

  [[nodiscard]] bool has(const std::string& name) const { return file_.contains(name); }

  /// Tensor `name`, which must have shape `shape`, as a (rows, cols) batch (rows * cols values).
  [[nodiscard]] batch<float, Space> tensor(const std::string& name, std::initializer_list<std::uint64_t> shape,
                                           index_t rows, index_t cols) {
    file_.require_shape(name, shape);
    used_.insert(name);
    batch<float, Space> out(ctx_, rows, cols);
    if constexpr (Space::host_accessible) {
      file_.read_into(name, std::span<float>(out.data(), static_cast<std::size_t>(out.size())));
    } else {
      const auto host = file_.read<float>(name);
      backend<Space>::upload(ctx_, host, out.view());
    }
    return out;
  }

  /// The weight matrix `name` of shape `shape`, as (rows, cols), in the reader's storage. A 16-bit
  /// tensor already in the storage format is copied bit for bit; anything else goes through
  /// float and is rounded to nearest (ties to even), as torch's .to(dtype) does.
  [[nodiscard]] linear_weights<Space> matrix(const std::string& name, std::initializer_list<std::uint64_t> shape,
                                             index_t rows, index_t cols) {
    linear_weights<Space> l;
    l.storage = storage_;
    if (storage_ == weight_storage::f32) {
      l.weight = tensor(name, shape, rows, cols);
      return l;
    }
    file_.require_shape(name, shape);
    used_.insert(name);
    const auto& info = file_.info(name);
    std::vector<std::uint16_t> words(static_cast<std::size_t>(ddm::checked_size("dit::weight_reader", "rows x cols", rows, cols)));
    const auto stored = storage_ == weight_storage::bf16 ? ddm::io::dtype::bf16 : ddm::io::dtype::f16;
    if (info.dtype == stored) {
      const auto raw = file_.raw(name);
      std::memcpy(words.data(), raw.data(), raw.size());  // little-endian words, any alignment
    } else {
      const auto values = file_.read<float>(name);
      for (std::size_t i = 0; i < words.size(); ++i)
        words[i] = storage_ == weight_storage::bf16 ? ddm::io::float_to_bf16(values[i]) : ddm::io::float_to_f16(values[i]);
    }
    l.weight16 = batch<std::uint16_t, Space>(ctx_, rows, cols);
    backend<Space>::upload(ctx_, std::span<const std::uint16_t>(words), l.weight16.view());
    return l;
  }

  /// `prefix`.weight (out, in) and, when `bias`, `prefix`.bias (out).
  [[nodiscard]] linear_weights<Space> linear(const std::string& prefix, index_t out, index_t in, bool bias = true) {
    linear_weights<Space> l = matrix(prefix + ".weight", {u(out), u(in)}, out, in);
    if (bias) l.bias = tensor(prefix + ".bias", {u(out)}, 1, out);
    return l;
  }

  /// A Linear stored the nn.MultiheadAttention way: `weight_name` (out, in), `bias_name` (out).
  [[nodiscard]] linear_weights<Space> linear_named(const std::string& weight_name, const std::string& bias_name,
                                                   index_t out, index_t in) {
    linear_weights<Space> l = matrix(weight_name, {u(out), u(in)}, out, in);
    l.bias = tensor(bias_name, {u(out)}, 1, out);
    return l;
  }

  /// Throws ddm::io_error naming the tensors of the file that no layer used.
  void require_all_used(const std::string& model) const {
    std::vector<std::string> unused;
    for (const auto& t : file_.tensors())
      if (used_.find(t.name) == used_.end()) unused.push_back(t.name);
    if (unused.empty()) return;
    std::string list;
    for (std::size_t i = 0; i < unused.size() && i < 5; ++i) list += (i ? ", '" : "'") + unused[i] + "'";
    if (unused.size() > 5) list += ddm::concat(" and ", unused.size() - 5, " more");
    throw ddm::io_error(ddm::concat("ddm::io::safetensors: '", file_.label(), "': ", unused.size(),
                                            " tensor(s) not used by the ", model, " configuration: ", list,
                                            " (wrong depth or architecture? load with strict = false to ignore)"));
  }

  [[nodiscard]] const ddm::io::safetensors_file& file() const noexcept { return file_; }
  [[nodiscard]] const ddm::execution_context<Space>& context() const noexcept { return ctx_; }
  [[nodiscard]] weight_storage storage() const noexcept { return storage_; }

  [[nodiscard]] static std::uint64_t u(index_t v) noexcept { return static_cast<std::uint64_t>(v); }

 private:
  const ddm::io::safetensors_file& file_;
  ddm::execution_context<Space> ctx_;
  weight_storage storage_;
  std::set<std::string> used_;
};

/// A tensor shape as messages print it: "[2, 16, 5]".
[[nodiscard]] inline std::string shape_text(std::span<const std::uint64_t> shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

/// Dimension `axis` of tensor `name` as a structural size of the model (a width, a channel count, a
/// patch): a ddm::io_error naming the file, the tensor, its shape and `what` when the tensor has
/// no such axis or the size is 0 or above max_dimension. Sizes read off shapes go through here
/// before any arithmetic is done with them: a zero patch would divide by zero, a huge one
/// overflow.
[[nodiscard]] inline index_t shape_size(const ddm::io::safetensors_file& file, const std::string& name,
                                        std::size_t axis, const char* what) {
  const auto& shape = file.info(name).shape;
  if (axis >= shape.size() || shape[axis] == 0 || shape[axis] > static_cast<std::uint64_t>(max_dimension))
    throw ddm::io_error(ddm::concat("ddm::io::safetensors: '", file.label(), "': tensor '", name,
                                            "' has shape ", shape_text(shape), ", whose ", what,
                                            axis < shape.size() ? "" : " (missing axis)", " is not in [1, ",
                                            max_dimension, "]"));
  return static_cast<index_t>(shape[axis]);
}

/// The number of blocks "<prefix>N.<suffix>" in a checkpoint: the largest N + 1 present.
[[nodiscard]] inline index_t count_blocks(const ddm::io::safetensors_file& file, const std::string& prefix,
                                          const std::string& suffix) {
  index_t n = 0;
  while (file.contains(prefix + std::to_string(n) + suffix)) ++n;
  return n;
}

}  // namespace dit
