#pragma once
// selected_ranks(ctx, embedded, selected, centroids) for device views: one thread per row running
// the host's selected_rank_sum; the histogram and pooled values are summed on the host in row
// order. NaN or infinite states or centroids are refused as on the host. alignment_ranks (x0_hat,
// the embedding, then these ranks) is the host header's, for every memory space.
//
// Returns host values, so it waits for the stream.
//
// Requires the CUDA toolkit (link ddm::cuda); include from CUDA translation units.

#include <cstddef>
#include <cstdint>
#include <limits>

#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/diagnostics/instruments/expert_views.hpp"
#include "ddm/cuda/transfer.hpp"
#include "ddm/diagnostics/instruments/alignment.hpp"

namespace ddm {

namespace cuda::detail {

// Per row: the number of selected experts and, when there are any, the sum of their ranks
// (selected_rank_sum) with the row's rank histogram; dist and hist are (B, K) scratch.
template <class T>
__global__ void __launch_bounds__(row_block)
    rank_kernel(const T* embedded, index_t se, const std::uint8_t* selected, index_t ss, const T* centroids,
                index_t sc, index_t rows, int k, index_t dim, double* dist, std::size_t* hist, double* sum,
                std::uint32_t* count) {
  for (index_t r = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const std::uint8_t* sel = selected + r * ss;
    std::size_t* h = hist + r * k;
    std::uint32_t n = 0;
    for (int e = 0; e < k; ++e) {
      n += sel[e] != 0 ? 1U : 0U;
      h[e] = 0;
    }
    count[r] = n;
    sum[r] = n == 0 ? 0.0
                    : diagnostics::selected_rank_sum(embedded + r * se, centroids, sc, k, dim, sel, dist + r * k, h);
  }
}

}  // namespace cuda::detail

namespace diagnostics {

/// Ranks of the selected experts' centroids (K, E) by distance from embedded device states (B, E).
/// Waits for the stream.
template <class T>
[[nodiscard]] alignment_result selected_ranks(const cuda_context& ctx, batch_view<const T, cuda_space> embedded,
                                              batch_view<const std::uint8_t, cuda_space> selected,
                                              batch_view<const T, cuda_space> centroids, double t) {
  const char* where = "ddm::diagnostics::selected_ranks";
  detail::check_rank_shapes(where, embedded, centroids);
  const index_t rows = embedded.rows();
  const index_t k = centroids.rows();
  cuda::detail::check_device_selection(ctx, where, selected, rows, k);
  // A NaN distance compares false with every other one, so a NaN state would rank 1: refuse it.
  cuda::detail::require_finite_device_view(ctx, where, "embedded", -1, embedded);
  cuda::detail::require_finite_device_view(ctx, where, "centroids", -1, centroids);
  batch<double, cuda_space> dist(ctx, rows, k);
  batch<std::size_t, cuda_space> hist(ctx, rows, k);
  batch<double, cuda_space> sum(ctx, rows, 1);
  batch<std::uint32_t, cuda_space> count(ctx, rows, 1);
  cuda::detail::rank_kernel<T><<<cuda::row_grid(rows), cuda::row_block, 0, ctx.stream()>>>(
      embedded.data(), embedded.stride(), selected.data(), selected.stride(), centroids.data(), centroids.stride(),
      rows, static_cast<int>(k), embedded.cols(), dist.data(), hist.data(), sum.data(), count.data());
  cuda::check_launch("ddm::diagnostics::selected_ranks (rank_kernel)");
  const auto h_hist = cuda::to_host(ctx, hist);
  const auto h_sum = cuda::to_host(ctx, sum);
  const auto h_count = cuda::to_host(ctx, count);
  alignment_result out = detail::empty_alignment(static_cast<std::size_t>(rows), static_cast<std::size_t>(k), t);
  for (index_t r = 0; r < rows; ++r) {
    const std::uint32_t n = h_count(r, 0);
    detail::add_ranked_row(out, static_cast<std::size_t>(r), n, h_sum(r, 0));
    if (n != 0)
      for (index_t e = 0; e < k; ++e) out.rank_histogram[static_cast<std::size_t>(e)] += h_hist(r, e);
  }
  return out;
}

}  // namespace diagnostics
}  // namespace ddm
