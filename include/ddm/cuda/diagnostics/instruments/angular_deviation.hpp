#pragma once
// angular_deviation(ctx, experts, blended, selected) for device views: each angle by one warp
// over the row, in double, with the host's formula (Kahan's 2 atan2(|a/|a| - b/|b||,
// |a/|a| + b/|b||)); the grouping by selection is the host's code, on the host. Like the host's,
// it refuses NaN or infinite velocities (non_finite_error naming the view, row, column and
// value). The stacked (K B, D) form is the host header's, for every memory space.
//
// Determinism: every sum is a warp's fixed shuffle tree, so the same inputs give the same bits on
// every run. Returns host values, so it waits for the stream.
//
// Requires the CUDA toolkit (link ddm::cuda); include from CUDA translation units.

#include <algorithm>
#include <span>

#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/diagnostics/instruments/expert_views.hpp"
#include "ddm/cuda/transfer.hpp"
#include "ddm/diagnostics/instruments/angular_deviation.hpp"

namespace ddm {

namespace cuda::detail {

// theta(r, e) = angle(expert e's row r, blended row r), one warp per (r, e); -1 for a zero vector.
template <class T>
__global__ void __launch_bounds__(elementwise_block)
    angle_kernel(const T* base, index_t step, index_t stride, const T* blended, index_t sb, index_t rows, int k,
                 index_t cols, double* theta) {
  const index_t warps_per_block = blockDim.x / 32;
  const auto lane = static_cast<index_t>(threadIdx.x % 32);
  for (index_t task = blockIdx.x * warps_per_block + threadIdx.x / 32; task < rows * k;
       task += static_cast<index_t>(gridDim.x) * warps_per_block) {
    const index_t r = task / k;
    const index_t e = task % k;
    const T* a = base + e * step + r * stride;
    const T* b = blended + r * sb;
    double na = 0.0, nb = 0.0;
    for (index_t j = lane; j < cols; j += 32) {
      na += static_cast<double>(a[j]) * static_cast<double>(a[j]);
      nb += static_cast<double>(b[j]) * static_cast<double>(b[j]);
    }
    na = warp_sum(na);
    nb = warp_sum(nb);
    if (!(na > 0.0) || !(nb > 0.0)) {
      if (lane == 0) theta[task] = -1.0;
      continue;
    }
    const double ia = 1.0 / sqrt(na);
    const double ib = 1.0 / sqrt(nb);
    double minus = 0.0, plus = 0.0;
    for (index_t j = lane; j < cols; j += 32) {
      const double ua = static_cast<double>(a[j]) * ia;
      const double ub = static_cast<double>(b[j]) * ib;
      minus += (ua - ub) * (ua - ub);
      plus += (ua + ub) * (ua + ub);
    }
    minus = warp_sum(minus);
    plus = warp_sum(plus);
    if (lane == 0) theta[task] = 2.0 * atan2(sqrt(minus), sqrt(plus));
  }
}

}  // namespace cuda::detail

namespace diagnostics {

/// The angular deviation for device views (see ddm/diagnostics/instruments/angular_deviation.hpp). Waits for
/// the stream.
template <class T>
[[nodiscard]] angular_deviation_result angular_deviation(const cuda_context& ctx,
                                                         std::span<const batch_view<const T, cuda_space>> experts,
                                                         batch_view<const T, cuda_space> blended,
                                                         batch_view<const std::uint8_t, cuda_space> selected) {
  const char* where = "ddm::diagnostics::angular_deviation";
  detail::check_expert_views(where, experts, 1);
  ddm::require_same_shape(where, "blended", blended, experts[0]);
  const index_t rows = blended.rows();
  const auto k = static_cast<index_t>(experts.size());
  cuda::detail::check_device_selection(ctx, where, selected, rows, k);
  // A NaN or infinite velocity would give an undefined angle, like a zero one: refuse it, as the host does.
  for (std::size_t e = 0; e < experts.size(); ++e)
    cuda::detail::require_finite_device_view(ctx, where, "experts", static_cast<long>(e), experts[e]);
  cuda::detail::require_finite_device_view(ctx, where, "blended", -1, blended);
  batch<T, cuda_space> storage;
  const auto layout = cuda::detail::lay_out_experts(ctx, experts, storage);
  batch<double, cuda_space> theta(ctx, rows, k);
  constexpr index_t warps = cuda::elementwise_block / 32;
  const auto blocks = static_cast<unsigned>(std::clamp<index_t>((rows * k + warps - 1) / warps, 1, cuda::max_grid_x));
  cuda::detail::angle_kernel<T><<<blocks, cuda::elementwise_block, 0, ctx.stream()>>>(
      layout.base, layout.step, layout.stride, blended.data(), blended.stride(), rows, static_cast<int>(k),
      blended.cols(), theta.data());
  cuda::check_launch("ddm::diagnostics::angular_deviation (angle_kernel)");
  const auto angles = cuda::to_host(ctx, theta);
  const auto sel = cuda::to_host(ctx, selected);
  angular_deviation_result out = detail::empty_angular_deviation(static_cast<std::size_t>(rows));
  for (index_t r = 0; r < rows; ++r)
    detail::group_row_angles(angles.data() + r * k, sel.data() + r * k, k, static_cast<std::size_t>(r), out);
  return out;
}

}  // namespace diagnostics
}  // namespace ddm
