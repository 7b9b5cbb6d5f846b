#pragma once
// Grouping rows by expert on device memory: the CUDA backend of ddm/routing/grouping.hpp
// (expert_grouping<cuda_space>): group_rows_by_expert, gather_rows and scatter_add_weighted on
// device views, and the kernels the device routed field is built from.
//
//   grouping            a counting sort of the selected (row, expert) pairs by expert: the (B, K)
//                       selection is written expert-major as 0/1 flags, and CUB's exclusive scan
//                       (cub::DeviceScan::ExclusiveSum, integer: exact and deterministic) gives
//                       each selected pair its place. Expert k's rows come out ascending in
//                       row_index[offsets[k], offsets[k + 1]) exactly as on the host. The K + 1
//                       offsets come back to the host (group() waits for the stream).
//   gather, scatter-add one row of the sub-batch per block row, 16-byte accesses when the rows
//                       share their alignment (launch.hpp). Scatter-add touches each output row
//                       once per call (a row appears at most once per expert), so it needs no
//                       atomics, and successive calls are ordered by the stream: the sums are
//                       those of the host, in the same order.
//
// Sizes: B * K must be below 2^31 (row indices are int32).
//
// Requires the CUDA toolkit and CUB (link ddm::cuda); include from CUDA translation units.

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <cub/device/device_scan.cuh>

#include "ddm/core/batch.hpp"
#include "ddm/core/conditioning.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/scratch.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/memory_resource.hpp"
#include "ddm/cuda/routing/softmax.hpp"
#include "ddm/routing/grouping.hpp"

namespace ddm {
namespace cuda::detail {

// (Kernels are templates, even where one instantiation is all there is, so that a header can
// define them in every translation unit that includes it.)
template <class Index>
__global__ void __launch_bounds__(row_block)
    row_bounds_kernel(const Index* rows, index_t rs, index_t n, index_t bound, int* first_bad) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t r = rows[i * rs];
    if (r < 0 || r >= bound) record_first(first_bad, n, i);
  }
}

// flags(e, r) = selected(r, e) != 0, expert-major: the order of the counting sort. Expert e on
// grid.y, rows on x.
template <class Flag>
__global__ void __launch_bounds__(elementwise_block)
    expert_major_flags_kernel(const Flag* selected, index_t ss, index_t rows, int k, int* flags) {
  for (index_t e = blockIdx.y; e < k; e += gridDim.y)
    for (index_t r = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; r < rows;
         r += static_cast<index_t>(gridDim.x) * blockDim.x)
      flags[e * rows + r] = selected[r * ss + e] != 0 ? 1 : 0;
}

// With pos = the exclusive scan of the flags: the selected pair (r, e) goes to row_index[pos];
// slot(r, e) = pos, or -1 where unselected (optional); offsets[e] = pos(e, 0), offsets[K] = the
// number of selected pairs.
template <class Flag>
__global__ void __launch_bounds__(elementwise_block)
    group_scatter_kernel(const Flag* selected, index_t ss, index_t rows, int k, const int* pos,
                         std::int32_t* row_index, index_t ri_stride, std::int32_t* slot, int* offsets) {
  for (index_t e = blockIdx.y; e < k; e += gridDim.y)
    for (index_t r = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; r < rows;
         r += static_cast<index_t>(gridDim.x) * blockDim.x) {
      const int p = pos[e * rows + r];
      const bool chosen = selected[r * ss + e] != 0;
      if (chosen) row_index[static_cast<index_t>(p) * ri_stride] = static_cast<std::int32_t>(r);
      if (slot != nullptr) slot[r * k + e] = chosen ? p : -1;
      if (r == 0) offsets[e] = p;
      if (e == k - 1 && r == rows - 1) offsets[k] = p + (chosen ? 1 : 0);
    }
}

// dst(i, :) = src(rows(i), :).
template <class U, int W>
__global__ void __launch_bounds__(elementwise_block)
    gather_rows_kernel(const U* src, index_t ss, const std::int32_t* rows, index_t rs, index_t n, U* dst, index_t sd,
                       index_t cols, index_t head, index_t vectors) {
  constexpr int unroll = 4;
  const index_t tid = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  const index_t threads = static_cast<index_t>(gridDim.x) * blockDim.x;
  const index_t body_end = head + vectors * W;
  const index_t edge = head + (cols - body_end);
  for (index_t i = blockIdx.y * static_cast<index_t>(blockDim.y) + threadIdx.y; i < n;
       i += static_cast<index_t>(gridDim.y) * blockDim.y) {
    const U* from = src + static_cast<index_t>(rows[i * rs]) * ss;
    U* to = dst + i * sd;
    if (tid < edge) {
      const index_t j = tid < head ? tid : body_end + (tid - head);
      to[j] = from[j];
    }
    const U* from_body = from + head;
    U* to_body = to + head;
    for (index_t base = tid; base < vectors; base += threads * unroll) {
      pack<U, W> in[unroll];
#pragma unroll
      for (int u = 0; u < unroll; ++u)
        if (base + u * threads < vectors) in[u] = load_stream<U, W>(from_body, base + u * threads);
#pragma unroll
      for (int u = 0; u < unroll; ++u)
        if (base + u * threads < vectors) store_stream<U, W>(to_body, base + u * threads, in[u]);
    }
  }
}

// v(rows(i), :) += weights(rows(i), k) * vk(i, :). Each v value is read and written by one thread.
template <class T, int W>
__global__ void __launch_bounds__(elementwise_block)
    scatter_add_kernel(T* v, index_t sv, const T* weights, index_t sw, index_t k, const std::int32_t* rows,
                       index_t rs, index_t n, const T* vk, index_t sk, index_t cols, index_t head, index_t vectors) {
  constexpr int unroll = 4;
  const index_t tid = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  const index_t threads = static_cast<index_t>(gridDim.x) * blockDim.x;
  const index_t body_end = head + vectors * W;
  const index_t edge = head + (cols - body_end);
  for (index_t i = blockIdx.y * static_cast<index_t>(blockDim.y) + threadIdx.y; i < n;
       i += static_cast<index_t>(gridDim.y) * blockDim.y) {
    const index_t r = rows[i * rs];
    const T w = weights[r * sw + k];
    T* out = v + r * sv;
    const T* in = vk + i * sk;
    if (tid < edge) {
      const index_t j = tid < head ? tid : body_end + (tid - head);
      out[j] += w * in[j];
    }
    T* out_body = out + head;
    const T* in_body = in + head;
    for (index_t base = tid; base < vectors; base += threads * unroll) {
      pack<T, W> a[unroll];
      pack<T, W> b[unroll];
#pragma unroll
      for (int u = 0; u < unroll; ++u)
        if (base + u * threads < vectors) {
          a[u] = load_stream<T, W>(out_body, base + u * threads);
          b[u] = load_stream<T, W>(in_body, base + u * threads);
        }
#pragma unroll
      for (int u = 0; u < unroll; ++u)
        if (base + u * threads < vectors) {
#pragma unroll
          for (int e = 0; e < W; ++e) a[u].v[e] += w * b[u].v[e];
          store_stream<T, W>(out_body, base + u * threads, a[u]);
        }
    }
  }
}

template <class U, int W>
void launch_gather(const cuda_context& ctx, batch_view<const U, cuda_space> src, row_index_view<cuda_space> rows,
                   batch_view<U, cuda_space> dst, const stream_layout& layout) {
  static std::array<std::atomic<int>, 64> resident_cache{};
  const index_t resident = resident_blocks(gather_rows_kernel<U, W>, elementwise_block, resident_cache);
  const index_t edge = src.cols() - layout.vectors * W;
  const row_blocks shape = row_mapped_shape(rows.rows(), std::max(layout.vectors, edge), 4, resident);
  gather_rows_kernel<U, W><<<shape.grid, shape.block, 0, ctx.stream()>>>(
      src.data(), src.stride(), rows.data(), rows.stride(), rows.rows(), dst.data(), dst.stride(), src.cols(),
      layout.head, layout.vectors);
  check_launch("ddm::gather_rows (gather_rows_kernel)");
}

template <class T, int W>
void launch_scatter_add(const cuda_context& ctx, batch_view<T, cuda_space> v, batch_view<const T, cuda_space> weights,
                        index_t k, row_index_view<cuda_space> rows, batch_view<const T, cuda_space> vk,
                        const stream_layout& layout) {
  static std::array<std::atomic<int>, 64> resident_cache{};
  const index_t resident = resident_blocks(scatter_add_kernel<T, W>, elementwise_block, resident_cache);
  const index_t edge = v.cols() - layout.vectors * W;
  const row_blocks shape = row_mapped_shape(rows.rows(), std::max(layout.vectors, edge), 4, resident);
  scatter_add_kernel<T, W><<<shape.grid, shape.block, 0, ctx.stream()>>>(
      v.data(), v.stride(), weights.data(), weights.stride(), k, rows.data(), rows.stride(), rows.rows(), vk.data(),
      vk.stride(), v.cols(), layout.head, layout.vectors);
  check_launch("ddm::scatter_add_weighted (scatter_add_kernel)");
}

/// The counting sort of the selected (row, expert) pairs by expert, with its workspace kept
/// between calls. enqueue() leaves row_index, the optional (B, K) slots and the K + 1 offsets (as
/// int, at `offsets`, device memory) on the stream without waiting.
class expert_grouper {
 public:
  void enqueue(const cuda_context& ctx, batch_view<const std::uint8_t, cuda_space> selected, std::int32_t* row_index,
               index_t row_index_stride, std::int32_t* slot, int* offsets) {
    const index_t rows = selected.rows();
    const int k = static_cast<int>(selected.cols());
    const index_t n = rows * k;
    auto flags = flags_.get(ctx, 1, n);
    auto pos = pos_.get(ctx, 1, n);
    std::size_t temp_bytes = 0;
    check(cub::DeviceScan::ExclusiveSum(nullptr, temp_bytes, flags.data(), pos.data(), static_cast<int>(n),
                                        ctx.stream()),
          "cub::DeviceScan::ExclusiveSum (workspace size) in ddm::group_rows_by_expert");
    auto temp = temp_.get(ctx, 1, static_cast<index_t>(std::max<std::size_t>(temp_bytes, 1)));
    const dim3 grid(static_cast<unsigned>(std::min((rows + elementwise_block - 1) / elementwise_block, max_grid_x)),
                    static_cast<unsigned>(std::min<index_t>(k, max_grid_y)), 1U);
    expert_major_flags_kernel<std::uint8_t><<<grid, elementwise_block, 0, ctx.stream()>>>(selected.data(), selected.stride(), rows,
                                                                             k, flags.data());
    check_launch("ddm::group_rows_by_expert (expert_major_flags_kernel)");
    check(cub::DeviceScan::ExclusiveSum(temp.data(), temp_bytes, flags.data(), pos.data(), static_cast<int>(n),
                                        ctx.stream()),
          "cub::DeviceScan::ExclusiveSum in ddm::group_rows_by_expert");
    group_scatter_kernel<std::uint8_t><<<grid, elementwise_block, 0, ctx.stream()>>>(
        selected.data(), selected.stride(), rows, k, pos.data(), row_index, row_index_stride, slot, offsets);
    check_launch("ddm::group_rows_by_expert (group_scatter_kernel)");
  }

 private:
  ddm::detail::scratch_buffer<int, cuda_space> flags_;
  ddm::detail::scratch_buffer<int, cuda_space> pos_;
  ddm::detail::scratch_buffer<unsigned char, cuda_space> temp_;
};

}  // namespace cuda::detail

/// Grouping, gathering and scatter-adding device rows (see the header comment).
template <>
struct expert_grouping<cuda_space> {
  /// Waits for the stream: the offsets come back to the host.
  static void group(const cuda_context& ctx, batch_view<const std::uint8_t, cuda_space> selected,
                    batch_view<std::int32_t, cuda_space> row_index, std::span<index_t> offsets) {
    const index_t rows = selected.rows();
    const index_t k = selected.cols();
    cuda::detail::check_routing_size("ddm::group_rows_by_expert", rows, k);
    for (auto& o : offsets) o = 0;
    if (rows == 0 || k == 0) return;
    cuda::detail::expert_grouper grouper;
    batch<int, cuda_space> device_offsets(ctx, 1, k + 1);
    grouper.enqueue(ctx, selected, row_index.data(), row_index.stride(), nullptr, device_offsets.data());
    std::vector<int> host(static_cast<std::size_t>(k + 1));
    DDM_CUDA_CHECK(cudaMemcpyAsync(host.data(), device_offsets.data(), host.size() * sizeof(int),
                                   cudaMemcpyDeviceToHost, ctx.stream()));
    ctx.synchronize();
    for (std::size_t i = 0; i < host.size(); ++i) offsets[i] = host[i];
  }

  /// The first i with rows(i, 0) outside [0, bound), or -1. Waits for the stream. (The free
  /// functions gather_rows and scatter_add_weighted check their indices with it, so that a bad
  /// index is an argument_error and not a fault that ends the CUDA context; the routed field,
  /// whose indices come from the grouping, does not.)
  static index_t first_bad_row(const cuda_context& ctx, row_index_view<cuda_space> rows, index_t bound) {
    if (rows.rows() == 0) return -1;
    const cuda::detail::device_scalar<int> first_bad(ctx);
    cuda::detail::row_bounds_kernel<std::int32_t><<<cuda::row_grid(rows.rows()), cuda::row_block, 0,
                                      ctx.stream()>>>(rows.data(), rows.stride(), rows.rows(), bound, first_bad.get());
    cuda::check_launch("ddm::gather_rows (row_bounds_kernel)");
    return cuda::detail::decode_first(first_bad.read(), rows.rows());
  }

  template <class U>
  static void gather(const cuda_context& ctx, batch_view<const U, cuda_space> src, row_index_view<cuda_space> rows,
                     batch_view<U, cuda_space> dst) {
    if (rows.rows() == 0 || src.cols() == 0) return;
    // Gathered rows come from anywhere in src: the vector path needs every row at the same
    // alignment, which the stride rule of a multi-row layout checks.
    const cuda::detail::stream_layout layout = cuda::detail::make_stream_layout<U>(
        std::array<const void*, 2>{src.data(), dst.data()}, std::array<index_t, 2>{src.stride(), dst.stride()}, 2,
        src.cols());
    if (layout.width > 1) {
      cuda::detail::launch_gather<U, cuda::detail::vector_width<U>>(ctx, src, rows, dst, layout);
    } else {
      cuda::detail::launch_gather<U, 1>(ctx, src, rows, dst, layout);
    }
  }

  template <class T>
  static void scatter_add(const cuda_context& ctx, batch_view<T, cuda_space> v, batch_view<const T, cuda_space> weights,
                          index_t k, row_index_view<cuda_space> rows, batch_view<const T, cuda_space> vk) {
    if (rows.rows() == 0 || v.cols() == 0) return;
    const cuda::detail::stream_layout layout = cuda::detail::make_stream_layout<T>(
        std::array<const void*, 2>{v.data(), vk.data()}, std::array<index_t, 2>{v.stride(), vk.stride()}, 2,
        v.cols());
    if (layout.width > 1) {
      cuda::detail::launch_scatter_add<T, cuda::detail::vector_width<T>>(ctx, v, weights, k, rows, vk, layout);
    } else {
      cuda::detail::launch_scatter_add<T, 1>(ctx, v, weights, k, rows, vk, layout);
    }
  }
};

}  // namespace ddm