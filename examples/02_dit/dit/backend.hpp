#pragma once
// The layer operations the DiT models are written in, and the small helpers every backend
// shares (a reusable workspace, a hook that sees intermediate activations).
//
// A model is a template over a memory space; all its arithmetic goes through
// `dit::backend<Space>`, a struct of static functions that a space specializes:
//
//   linear(ctx, x, w, bias, y)                 y = x w^T + bias       x (M, K), w (N, K) [PyTorch layout]
//   layer_norm(ctx, x, eps, gamma, beta, y)    per row, optional affine (gamma/beta null: none)
//   layer_norm_modulate(ctx, x, eps, shift, scale, y)   LN(x) * (1 + scale_b) + shift_b per sample b
//   gated_residual(ctx, x, gate, y)            x += gate_b * y         (gate empty: x += y)
//   add_row_vector(ctx, x, v, y)               y(r, :) = x(r, :) + v(0, :)
//   silu(ctx, x, y), gelu_tanh(ctx, x, y)      element-wise, in place allowed
//   attention(ctx, q, k, v, batch, heads, out) softmax(q k^T / sqrt(hd)) v, per sample and head
//   patchify(ctx, x, geometry, tokens)         NCHW latents -> (B*T, C*p*p) rows in (c, py, px) order
//   unpatchify(ctx, tokens, geometry, keep, x) (B*T, p*p*C_out) rows in (py, px, c) order -> NCHW
//   gather_rows(ctx, table, rows, out)         out(r, :) = table(rows[r], :)
//   upload(ctx, host values, dst)              host floats into the space's memory
//   download(ctx, src, host values)            the reverse
//
// Activations are (rows, cols) batch views: tokens of all samples stacked, (B*T, D); per-sample
// vectors (B, D), possibly strided views into a wider matrix (the six adaLN chunks of a (B, 6D)
// modulation). backend_host.hpp implements the host space with a CBLAS and OpenMP; a CUDA
// backend implements the same names with cuBLAS and kernels.

#include <cstddef>
#include <functional>
#include <string_view>
#include <vector>

#include <ddm/core/batch.hpp>
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
template <class Space>
class workspace {
 public:
  /// A contiguous (rows, cols) view of slot `slot`, valid until the slot is requested again.
  batch_view<float, Space> get(std::size_t slot, index_t rows, index_t cols) {
    if (slot >= slots_.size()) slots_.resize(slot + 1);
    auto& b = slots_[slot];
    if (b.size() < rows * cols) b = batch<float, Space>(1, rows * cols);
    return batch_view<float, Space>(b.data(), rows, cols);
  }

 private:
  std::vector<batch<float, Space>> slots_;
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
