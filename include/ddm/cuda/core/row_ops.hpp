#pragma once
// The state algebra's per-row operations (ddm/core/row_ops.hpp) on device views: row_ops<cuda_space>
// (axpy_rows, scale_rows, row_dots). The B per-row scalars stay on the host: a row operation copies
// its B coefficients to the device and a row reduction copies its B results back; both wait for
// the stream (the Jacobian estimators that use them are driven from the host, one reduction at a
// time, so the waits cost little next to the field evaluations).
//
// Requires the CUDA toolkit (link ddm::cuda); include from CUDA translation units.

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <span>

#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/row_ops.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/core/algebra.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/memory_resource.hpp"
#include "ddm/cuda/transfer.hpp"

namespace ddm {
namespace cuda::detail {

// out_r = (Axpy ? x_r : 0) + c_r y_r, c in double on the device, applied in T as on the host.
template <class T, int W, bool Axpy>
__global__ void __launch_bounds__(elementwise_block)
    row_scaled_kernel(T* out, index_t so, const T* x, index_t sx, const T* y, index_t sy, const double* c,
                      index_t rows, index_t cols, index_t head, index_t vectors) {
  constexpr int unroll = 4;
  const index_t tid = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  const index_t threads = static_cast<index_t>(gridDim.x) * blockDim.x;
  const index_t body_end = head + vectors * W;
  const index_t edge = head + (cols - body_end);
  for (index_t r = blockIdx.y * static_cast<index_t>(blockDim.y) + threadIdx.y; r < rows;
       r += static_cast<index_t>(gridDim.y) * blockDim.y) {
    const auto cr = static_cast<T>(c[r]);
    T* o = out + r * so;
    const T* px = Axpy ? x + r * sx : nullptr;
    const T* py = y + r * sy;
    if (tid < edge) {
      const index_t j = tid < head ? tid : body_end + (tid - head);
      if constexpr (Axpy) {
        o[j] = px[j] + cr * py[j];
      } else {
        o[j] = cr * py[j];
      }
    }
    T* o_body = o + head;
    const T* y_body = py + head;
    const T* x_body = Axpy ? px + head : nullptr;
    for (index_t base = tid; base < vectors; base += threads * unroll) {
      pack<T, W> a[unroll];
      pack<T, W> b[unroll];
#pragma unroll
      for (int u = 0; u < unroll; ++u)
        if (base + u * threads < vectors) {
          b[u] = load_stream<T, W>(y_body, base + u * threads);
          if constexpr (Axpy) a[u] = load_stream<T, W>(x_body, base + u * threads);
        }
#pragma unroll
      for (int u = 0; u < unroll; ++u)
        if (base + u * threads < vectors) {
          pack<T, W> result;
#pragma unroll
          for (int e = 0; e < W; ++e) {
            if constexpr (Axpy) {
              result.v[e] = a[u].v[e] + cr * b[u].v[e];
            } else {
              result.v[e] = cr * b[u].v[e];
            }
          }
          store_stream<T, W>(o_body, base + u * threads, result);
        }
    }
  }
}

template <class T, int W, bool Axpy>
void launch_row_scaled(const cuda_context& ctx, batch_view<T, cuda_space> out, const T* x, index_t sx,
                       batch_view<const T, cuda_space> y, const double* c, const stream_layout& layout) {
  static std::array<std::atomic<int>, 64> resident_cache{};
  const index_t resident = resident_blocks(row_scaled_kernel<T, W, Axpy>, elementwise_block, resident_cache);
  const index_t edge = out.cols() - layout.vectors * W;
  const row_blocks shape = row_mapped_shape(out.rows(), std::max(layout.vectors, edge), 4, resident);
  row_scaled_kernel<T, W, Axpy><<<shape.grid, shape.block, 0, ctx.stream()>>>(
      out.data(), out.stride(), x, sx, y.data(), y.stride(), c, out.rows(), out.cols(), layout.head, layout.vectors);
  check_launch(Axpy ? "ddm::axpy_rows (row_scaled_kernel)" : "ddm::scale_rows (row_scaled_kernel)");
}

template <bool Axpy, class T>
void row_scaled(const cuda_context& ctx, batch_view<T, cuda_space> out, batch_view<const T, cuda_space> x,
                std::span<const double> c, batch_view<const T, cuda_space> y) {
  const index_t rows = out.rows();
  // The coefficients live in the caller's pageable memory, which the caller may change as soon
  // as this returns (the Jacobian estimators flip their signs at once): the blocking copy
  // guarantees they have reached the device.
  batch<double, cuda_space> coefficients(ctx, 1, rows);
  ddm::copy(ctx, coefficients.view(), batch_view<const double>(c.data(), 1, rows));
  const stream_layout layout = Axpy ? make_stream_layout<T>(std::array<const void*, 3>{out.data(), x.data(), y.data()},
                                                            std::array<index_t, 3>{out.stride(), x.stride(), y.stride()},
                                                            rows, out.cols())
                                    : make_stream_layout<T>(std::array<const void*, 2>{out.data(), y.data()},
                                                            std::array<index_t, 2>{out.stride(), y.stride()}, rows,
                                                            out.cols());
  const T* xp = Axpy ? x.data() : nullptr;
  if (layout.width > 1) {
    launch_row_scaled<T, vector_width<T>, Axpy>(ctx, out, xp, x.stride(), y, coefficients.data(), layout);
  } else {
    launch_row_scaled<T, 1, Axpy>(ctx, out, xp, x.stride(), y, coefficients.data(), layout);
  }
}

}  // namespace cuda::detail

/// Per-row operations on device views (see the header comment).
template <>
struct row_ops<cuda_space> {
  template <class T>
  static void axpy(const cuda_context& ctx, batch_view<T, cuda_space> out, batch_view<const T, cuda_space> x,
                   std::span<const double> c, batch_view<const T, cuda_space> y) {
    cuda::detail::row_scaled<true>(ctx, out, x, c, y);
  }

  template <class T>
  static void scale(const cuda_context& ctx, batch_view<T, cuda_space> out, std::span<const double> c,
                    batch_view<const T, cuda_space> x) {
    cuda::detail::row_scaled<false>(ctx, out, x, c, x);
  }

  /// Waits for the stream.
  template <class T>
  static void dots(const cuda_context& ctx, batch_view<const T, cuda_space> a, batch_view<const T, cuda_space> b,
                   std::span<double> out) {
    batch<double, cuda_space> device_out(ctx, a.rows(), 1);
    ddm::row_dot(ctx, a, b, device_out.view());
    ddm::copy(ctx, batch_view<double>(out.data(), a.rows(), 1), device_out);
  }
};

}  // namespace ddm
