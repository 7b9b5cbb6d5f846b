#pragma once
// The layer operations the DiT models are written in, and the small helpers every backend
// shares (a reusable workspace, a hook that sees intermediate activations).
//
// A model is a template over a memory space; all its arithmetic goes through
// `dit::backend<Space>`, a struct of static functions that a space specializes:
//
//   linear(ctx, x, w, bias, y)                 y = x w^T + bias       x (M, K), w (N, K) [PyTorch layout];
//                                              w a float view or a weight_view (float, bf16 or f16 storage)
//   layer_norm(ctx, x, eps, gamma, beta, y)    per row, optional affine (gamma/beta null: none)
//   layer_norm_modulate(ctx, x, eps, shift, scale, y)   LN(x) * (1 + scale_b) + shift_b per sample b
//   gated_residual(ctx, x, gate, y)            x += gate_b * y         (gate empty: x += y)
//   add_row_vector(ctx, x, v, y)               y(r, :) = x(r, :) + v(0, :)
//   silu(ctx, x, y), gelu_tanh(ctx, x, y)      element-wise, in place allowed
//   attention(ctx, q, k, v, batch, heads, out, operands)
//                                              softmax(q k^T / sqrt(hd)) v, per sample and head;
//                                              operands: the layer's weight storage (a device
//                                              backend rounds q, k, v to it for its products)
//   modulated_linear(ctx, x, eps, shift, scale, w, bias, y, h)   y = linear(layer_norm_modulate(x)) via h
//   gelu_linear(ctx, f, w, bias, y)            y = linear(gelu_tanh(f)) (f may be overwritten)
//   attention_linear(ctx, q, k, v, batch, heads, operands, w, bias, y, a)   y = linear(attention(...)) via a
//                                              (the three compositions above, fused by a device
//                                              backend into the 16-bit operand of the product)
//   patchify(ctx, x, geometry, tokens)         NCHW latents -> (B*T, C*p*p) rows in (c, py, px) order
//   unpatchify(ctx, tokens, geometry, keep, x) (B*T, p*p*C_out) rows in (py, px, c) order -> NCHW
//   timestep_embedding(ctx, t, freqs, out)     out(r, :) = [cos(t_r freqs) | sin(t_r freqs)], t on the host
//   gather_rows(ctx, table, rows, out)         out(r, :) = table(rows[r], :), rows on the host
//   upload(ctx, host values, dst)              host floats (or 16-bit words) into the space's memory
//   download(ctx, src, host values)            the reverse
//   download_indices(ctx, rows, host)          row indices of the space into a host vector
//
// Small per-call inputs (timesteps, label and row indices) come as host spans: a device backend
// passes them to its kernels by value, so that a forward pass never waits for the device.
// Activations are (rows, cols) batch views: tokens of all samples stacked, (B*T, D); per-sample
// vectors (B, D), possibly strided views into a wider matrix (the six adaLN chunks of a (B, 6D)
// modulation). backend_host.hpp implements the host space with a CBLAS and OpenMP; a CUDA
// backend implements the same names with cuBLAS and kernels.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include <ddm/core/batch.hpp>
#include <ddm/core/error.hpp>
#include <ddm/core/memory_space.hpp>

namespace dit {

using ddm::batch;
using ddm::batch_view;
using ddm::index_t;

/// The backend of a memory space; see the list of operations above.
template <class Space>
struct backend {
  static_assert(sizeof(Space) == 0,
                "dit::backend: no DiT backend for this memory space; include dit/backend_host.hpp for "
                "ddm::host_space");
};

/// The layout of an image latent: C channels of H x W, cut into p x p patches.
struct patch_geometry {
  index_t channels = 4;
  index_t height = 32;
  index_t width = 32;
  index_t patch = 2;
  [[nodiscard]] index_t grid_h() const noexcept { return height / patch; }
  [[nodiscard]] index_t grid_w() const noexcept { return width / patch; }
  [[nodiscard]] index_t tokens() const noexcept { return grid_h() * grid_w(); }
  [[nodiscard]] index_t patch_values(index_t c) const noexcept { return c * patch * patch; }
};

/// Called with a stage name ("x_embed", "block.3", ...) and the activation at that stage, for
/// comparing against a reference implementation layer by layer. Never called when empty.
template <class Space>
using stage_hook = std::function<void(std::string_view, batch_view<const float, Space>)>;

/// Scratch buffers reused across forward calls: slot i keeps the largest allocation asked of it.
/// Device memory is allocated (and freed) through the workspace's context: give it the context
/// the forward passes run in.
template <class Space>
class workspace {
 public:
  explicit workspace(const ddm::execution_context<Space>& ctx = {}) : ctx_(ctx) {}

  /// A contiguous (rows, cols) view of slot `slot`, valid until the slot is requested again.
  batch_view<float, Space> get(std::size_t slot, index_t rows, index_t cols) {
    if (slot >= slots_.size()) slots_.resize(slot + 1);
    auto& b = slots_[slot];
    if (b.size() < rows * cols) b = batch<float, Space>(ctx_, 1, rows * cols);
    return batch_view<float, Space>(b.data(), rows, cols);
  }

  [[nodiscard]] const ddm::execution_context<Space>& context() const noexcept { return ctx_; }

 private:
  [[no_unique_address]] ddm::execution_context<Space> ctx_;
  std::vector<batch<float, Space>> slots_;
};

/// How the weight matrices of Linear (and patch-embedding) layers are kept in memory. Biases,
/// tables and every activation stay float; with bf16 / f16 storage a device backend feeds the
/// matrix products 16-bit operands and accumulates in float. The host backend keeps float only.
enum class weight_storage { f32, bf16, f16 };

[[nodiscard]] constexpr const char* to_string(weight_storage s) noexcept {
  switch (s) {
    case weight_storage::f32: return "f32";
    case weight_storage::bf16: return "bf16";
    case weight_storage::f16: return "f16";
  }
  return "?";
}

/// Bytes per stored weight.
[[nodiscard]] constexpr std::size_t storage_bytes(weight_storage s) noexcept {
  return s == weight_storage::f32 ? 4 : 2;
}

/// A read-only (out, in) weight matrix in a space, in any weight_storage: float values, or the
/// 16-bit words of bf16 / f16 values. Row-major with a row stride, like a batch_view.
template <class Space>
struct weight_view {
  const void* data = nullptr;
  index_t rows = 0;
  index_t cols = 0;
  index_t stride = 0;
  weight_storage storage = weight_storage::f32;

  weight_view() = default;
  weight_view(const void* d, index_t r, index_t c, index_t s, weight_storage st) noexcept
      : data(d), rows(r), cols(c), stride(s), storage(st) {}
  /// A float matrix.
  weight_view(batch_view<const float, Space> w) noexcept  // NOLINT: a float view is a weight view
      : data(w.data()), rows(w.rows()), cols(w.cols()), stride(w.stride()), storage(weight_storage::f32) {}

  /// Rows [first, first + count).
  [[nodiscard]] weight_view subrows(index_t first, index_t count) const {
    if (first < 0 || count < 0 || first + count > rows)
      throw ddm::shape_error(ddm::concat("dit::weight_view::subrows: rows [", first, ", ", first + count,
                                                 ") requested, expected a range inside [0, ", rows, ")"));
    const auto* bytes = static_cast<const unsigned char*>(data);
    return {bytes + static_cast<std::size_t>(first * stride) * storage_bytes(storage), count, cols, stride, storage};
  }

  /// The matrix as a float view; ddm::argument_error unless the storage is f32.
  [[nodiscard]] batch_view<const float, Space> as_f32(const char* where) const {
    if (storage != weight_storage::f32)
      throw ddm::argument_error(ddm::concat(where, ": the weights are stored as ", to_string(storage),
                                                    ", expected f32 (this backend keeps float weights only)"));
    return batch_view<const float, Space>(static_cast<const float*>(data), rows, cols, stride);
  }
};

/// The (B, D) view of chunk `k` of a (B, n*D) matrix of per-sample modulation vectors.
template <class T, class Space>
[[nodiscard]] batch_view<T, Space> chunk(batch_view<T, Space> m, index_t k, index_t d) {
  return batch_view<T, Space>(m.data() + k * d, m.rows(), d, m.stride());
}

/// Columns [first, first + count) of a matrix, as a strided view.
template <class T, class Space>
[[nodiscard]] batch_view<T, Space> columns(batch_view<T, Space> m, index_t first, index_t count) {
  return batch_view<T, Space>(m.data() + first, m.rows(), count, m.stride());
}

}  // namespace dit
