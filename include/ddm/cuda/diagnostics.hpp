#pragma once
// The diagnostics on device memory.
//
// - fill_probe for device views: with it and row_ops<cuda_space> (ddm/cuda/core/row_ops.hpp) the
//   Jacobian estimators of ddm/diagnostics/jacobian/ (jacobian_products, Hutchinson, power
//   iteration, dense Jacobian) and the L_eff observer run on device views unchanged.
// - expert_disagreement(ctx, experts): the mean pairwise distance among the K expert velocities
//   of each row through their Gram matrices, G_r = V_r V_r^T with V_r the (K, D) block of row r,
//   from one strided batched GEMM (cuBLAS, B matrices of K x K), then
//   d_ab^2 = G_aa + G_bb - 2 G_ab per pair in double. Rounding can make d_ab^2 slightly negative
//   when two experts nearly agree; it is clamped to 0. The GEMM accumulates in T, so the
//   distances carry a relative error of about eps_T (|v_a|^2 + |v_b|^2) / d_ab^2 next to the
//   host's direct differences: small for experts that disagree, large (in relative terms) for
//   nearly equal ones, where the distance itself is small.
// - angular_deviation(ctx, experts, blended, selected): each angle by one warp over the row, in
//   double, with the host's formula (Kahan's 2 atan2(|a/|a| - b/|b||, |a/|a| + b/|b||));
//   the grouping by selection is the host's code, on the host. Like the host's, it refuses NaN or
//   infinite velocities (non_finite_error naming the view, row, column and value).
// - selected_ranks / alignment_ranks(ctx, ...): one thread per row running the host's
//   selected_rank_sum; the histogram and pooled values are summed on the host in row order.
//   NaN or infinite states or centroids are refused as on the host.
// - routing_instruments<cuda_space>: the above for the routing observer
//   (ddm/diagnostics/observers/routing_observer.hpp), which then runs on device views unchanged.
//
// Determinism: the GEMM is cuBLAS's (reproducible run to run on one architecture and toolkit);
// every other sum is formed in a fixed order (per thread, or a warp's fixed shuffle tree), so the
// same inputs give the same bits on every run. Each function returns host vectors, so it waits
// for the stream.
//
// Requires the CUDA toolkit, CUB and cuBLAS (link ddm::cuda); include from CUDA translation units.

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/cuda/core/algebra.hpp"
#include "ddm/cuda/blas.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/memory_resource.hpp"
#include "ddm/cuda/core/rng.hpp"
#include "ddm/cuda/routing/grouping.hpp"
#include "ddm/cuda/routing/policy.hpp"
#include "ddm/cuda/routing/softmax.hpp"
#include "ddm/cuda/transfer.hpp"
#include "ddm/diagnostics/instruments/alignment.hpp"
#include "ddm/diagnostics/instruments/angular_deviation.hpp"
#include "ddm/diagnostics/instruments/disagreement.hpp"
#include "ddm/diagnostics/instruments/expert_views.hpp"
#include "ddm/diagnostics/jacobian/probes.hpp"
#include "ddm/diagnostics/observers/routing_observer.hpp"
#include "ddm/cuda/core/row_ops.hpp"
#include "ddm/flow/parameterization.hpp"

namespace ddm {

namespace cuda::detail {

template <class T>
__global__ void __launch_bounds__(elementwise_block)
    rademacher_kernel(T* z, index_t stride, index_t rows, index_t cols, std::uint64_t seed, std::uint64_t stream) {
  for (index_t r = blockIdx.y; r < rows; r += gridDim.y)
    for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < cols;
         j += static_cast<index_t>(gridDim.x) * blockDim.x) {
      const auto n = static_cast<std::uint64_t>(r) * static_cast<std::uint64_t>(cols) + static_cast<std::uint64_t>(j);
      z[r * stride + j] = static_cast<T>(diagnostics::rademacher(seed, stream, n));
    }
}

/// K views of (B, D) as one strided layout: expert e's row r at base + e * step + r * stride
/// (elements). Views that are not already laid out so are copied into `storage` as a stacked
/// (K B, D) batch.
template <class T>
struct expert_layout {
  const T* base = nullptr;
  index_t step = 0;
  index_t stride = 0;
};

template <class T>
[[nodiscard]] expert_layout<T> lay_out_experts(const cuda_context& ctx,
                                               std::span<const batch_view<const T, cuda_space>> experts,
                                               batch<T, cuda_space>& storage) {
  const auto k = static_cast<index_t>(experts.size());
  const index_t rows = experts[0].rows();
  const index_t cols = experts[0].cols();
  const auto address = [](const T* p) { return reinterpret_cast<std::uintptr_t>(p); };
  bool even = true;
  index_t step = cols;
  if (k > 1) {
    const std::uintptr_t a0 = address(experts[0].data());
    const std::uintptr_t a1 = address(experts[1].data());
    even = a1 > a0 && (a1 - a0) % sizeof(T) == 0;
    if (even) step = static_cast<index_t>((a1 - a0) / sizeof(T));
    // The GEMM reads each row's K vectors as the columns of a D x K matrix with leading
    // dimension `step`, which must be at least D.
    even = even && step >= cols;
  }
  for (index_t e = 0; even && e < k; ++e)
    even = experts[static_cast<std::size_t>(e)].stride() == experts[0].stride() &&
           address(experts[static_cast<std::size_t>(e)].data()) ==
               address(experts[0].data()) + static_cast<std::uintptr_t>(e * step) * sizeof(T);
  if (even) return {experts[0].data(), step, experts[0].stride()};
  storage = batch<T, cuda_space>(ctx, k * rows, cols);
  for (index_t e = 0; e < k; ++e) copy(ctx, storage.view().subrows(e * rows, rows), experts[static_cast<std::size_t>(e)]);
  return {storage.data(), rows * cols, cols};
}

// G_r = V_r V_r^T for every row r (B, K x K, column-major = row-major: G is symmetric).
template <class T>
void gram_matrices(const cuda_context& ctx, const expert_layout<T>& layout, index_t rows, index_t k, index_t cols,
                   T* gram) {
  const cublasHandle_t handle = blas_for(ctx);
  const T one = 1;
  const T zero = 0;
  if constexpr (std::is_same_v<T, float>) {
    check_blas(cublasSgemmStridedBatched_64(handle, CUBLAS_OP_T, CUBLAS_OP_N, k, k, cols, &one, layout.base,
                                            layout.step, layout.stride, layout.base, layout.step, layout.stride, &zero,
                                            gram, k, k * k, rows),
               "cublasSgemmStridedBatched_64 (Gram matrices in ddm::diagnostics::expert_disagreement)");
  } else {
    static_assert(std::is_same_v<T, double>, "ddm::diagnostics::expert_disagreement on the device: float or double");
    check_blas(cublasDgemmStridedBatched_64(handle, CUBLAS_OP_T, CUBLAS_OP_N, k, k, cols, &one, layout.base,
                                            layout.step, layout.stride, layout.base, layout.step, layout.stride, &zero,
                                            gram, k, k * k, rows),
               "cublasDgemmStridedBatched_64 (Gram matrices in ddm::diagnostics::expert_disagreement)");
  }
}

// d_r = 2 / (K (K - 1)) sum_{a < b} sqrt(max(0, G_aa + G_bb - 2 G_ab)), in double.
template <class T>
__global__ void __launch_bounds__(row_block)
    gram_disagreement_kernel(const T* gram, index_t rows, int k, double* out) {
  for (index_t r = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const T* g = gram + r * k * k;
    double sum = 0.0;
    for (int a = 0; a < k; ++a)
      for (int b = a + 1; b < k; ++b) {
        const double d2 = static_cast<double>(g[a * k + a]) + static_cast<double>(g[b * k + b]) -
                          2.0 * static_cast<double>(g[a * k + b]);
        sum += sqrt(d2 > 0.0 ? d2 : 0.0);
      }
    out[r] = 2.0 * sum / (static_cast<double>(k) * static_cast<double>(k - 1));
  }
}

__device__ __forceinline__ double warp_sum(double v) {
  // A fixed butterfly: every lane ends with the same sum, formed in the same order on every run.
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffU, v, offset);
  return v;
}

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

// The first entry of a (B, K) selection that is neither 0 nor 1 (row-major index), or none.
template <class Flag>
__global__ void __launch_bounds__(row_block)
    selection_check_kernel(const Flag* selected, index_t ss, index_t rows, int k, int* first_bad) {
  for (index_t r = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<index_t>(gridDim.x) * blockDim.x)
    for (int e = 0; e < k; ++e)
      if (selected[r * ss + e] > 1) record_first(first_bad, rows * k, r * k + e);
}

inline void check_device_selection(const cuda_context& ctx, const char* where,
                                   batch_view<const std::uint8_t, cuda_space> selected, index_t rows, index_t k) {
  ddm::require_shape(where, "selected", selected, rows, k);
  check_routing_size(where, rows, k);
  const device_scalar<int> first_bad(ctx);
  selection_check_kernel<std::uint8_t><<<row_grid(rows), row_block, 0, ctx.stream()>>>(selected.data(), selected.stride(), rows,
                                                                           static_cast<int>(k), first_bad.get());
  check_launch("ddm::diagnostics (selection_check_kernel)");
  const index_t bad = decode_first(first_bad.read(), rows * k);
  if (bad < 0) return;
  std::uint8_t value = 0;
  DDM_CUDA_CHECK(cudaMemcpyAsync(&value, selected.row(bad / k) + bad % k, 1, cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.synchronize();
  throw argument_error(ddm::concat(where, ": argument 'selected' has value ", int{value}, " at (", bad / k, ", ",
                                           bad % k, "), expected 0 or 1"));
}

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

// The host's require_finite_view for a device view: one flag kernel (all_finite; waits for the
// stream), and only on the error path a copy to the host, so that the error names the argument,
// the row, the column and the value exactly as the host's does.
template <class T>
void require_finite_device_view(const cuda_context& ctx, const char* where, const char* name, long index,
                                batch_view<const T, cuda_space> v) {
  if (ddm::all_finite(ctx, v)) return;
  const auto host = cuda::to_host(ctx, v);
  diagnostics::detail::require_finite_view(where, name, index, host.cview());
}

}  // namespace cuda::detail

namespace diagnostics {

/// Probe values in a device view: the same numbers as the host's fill_probe (Rademacher: bit for
/// bit; Gaussian: fill_normal's agreement, see ddm/cuda/core/rng.hpp).
template <class T>
void fill_probe(const cuda_context& ctx, batch_view<T, cuda_space> z, probe_kind kind, std::uint64_t seed,
                std::uint64_t stream) {
  if (kind == probe_kind::gaussian) {
    ddm::fill_normal(ctx, z, seed, stream);
    return;
  }
  if (z.empty()) return;
  cuda::detail::rademacher_kernel<T>
      <<<cuda::detail::elementwise_grid(z.rows(), z.cols()), cuda::detail::elementwise_block, 0, ctx.stream()>>>(
          z.data(), z.stride(), z.rows(), z.cols(), seed, stream);
  cuda::check_launch("ddm::diagnostics::fill_probe (rademacher_kernel)");
}

/// d_r (mean pairwise distance among the K expert velocities of row r) for device views, through
/// Gram matrices (see the header comment). Waits for the stream.
template <class T>
[[nodiscard]] std::vector<double> expert_disagreement(const cuda_context& ctx,
                                                      std::span<const batch_view<const T, cuda_space>> experts) {
  const char* where = "ddm::diagnostics::expert_disagreement";
  detail::check_expert_views(where, experts, 2);
  const index_t rows = experts[0].rows();
  const auto k = static_cast<index_t>(experts.size());
  const index_t cols = experts[0].cols();
  batch<T, cuda_space> storage;
  const auto layout = cuda::detail::lay_out_experts(ctx, experts, storage);
  batch<T, cuda_space> gram(ctx, rows, k * k);
  cuda::detail::gram_matrices(ctx, layout, rows, k, cols, gram.data());
  batch<double, cuda_space> d(ctx, rows, 1);
  cuda::detail::gram_disagreement_kernel<T>
      <<<cuda::detail::row_grid(rows), cuda::detail::row_block, 0, ctx.stream()>>>(gram.data(), rows,
                                                                                     static_cast<int>(k), d.data());
  cuda::check_launch("ddm::diagnostics::expert_disagreement (gram_disagreement_kernel)");
  std::vector<double> out(static_cast<std::size_t>(rows));
  ddm::copy(ctx, batch_view<double>(out.data(), rows, 1), d);
  ddm::require_finite_rows(where, "the expert disagreement", out, 0.0);
  return out;
}

/// d_r from a stacked (K * B, D) device batch (expert k in rows [k B, (k + 1) B)).
template <class T>
[[nodiscard]] std::vector<double> expert_disagreement(const cuda_context& ctx, batch_view<const T, cuda_space> stacked,
                                                      index_t experts) {
  const auto views = split_stacked(stacked, experts);
  return expert_disagreement(ctx, std::span<const batch_view<const T, cuda_space>>(views));
}

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
  constexpr index_t warps = cuda::detail::elementwise_block / 32;
  const auto blocks = static_cast<unsigned>(std::clamp<index_t>((rows * k + warps - 1) / warps, 1, cuda::detail::max_grid_x));
  cuda::detail::angle_kernel<T><<<blocks, cuda::detail::elementwise_block, 0, ctx.stream()>>>(
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

/// The same from a stacked (K * B, D) device batch of expert velocities.
template <class T>
[[nodiscard]] angular_deviation_result angular_deviation(const cuda_context& ctx, batch_view<const T, cuda_space> stacked,
                                                         index_t experts, batch_view<const T, cuda_space> blended,
                                                         batch_view<const std::uint8_t, cuda_space> selected) {
  const auto views = split_stacked(stacked, experts);
  return angular_deviation(ctx, std::span<const batch_view<const T, cuda_space>>(views), blended, selected);
}

/// Ranks of the selected experts' centroids (K, E) by distance from embedded device states (B, E).
/// Waits for the stream.
template <class T>
[[nodiscard]] alignment_result selected_ranks(const cuda_context& ctx, batch_view<const T, cuda_space> embedded,
                                              batch_view<const std::uint8_t, cuda_space> selected,
                                              batch_view<const T, cuda_space> centroids, double t = 0.0) {
  const char* where = "ddm::diagnostics::selected_ranks";
  ddm::require_non_empty(where, "embedded", embedded);
  ddm::require_non_empty(where, "centroids", centroids);
  if (centroids.cols() != embedded.cols())
    throw shape_error(ddm::concat(where, ": argument 'centroids' has ", centroids.cols(),
                                          " columns, expected the embedding dimension ", embedded.cols()));
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
  cuda::detail::rank_kernel<T><<<cuda::detail::row_grid(rows), cuda::detail::row_block, 0, ctx.stream()>>>(
      embedded.data(), embedded.stride(), selected.data(), selected.stride(), centroids.data(), centroids.stride(),
      rows, static_cast<int>(k), embedded.cols(), dist.data(), hist.data(), sum.data(), count.data());
  cuda::check_launch("ddm::diagnostics::selected_ranks (rank_kernel)");
  const auto h_hist = cuda::to_host(ctx, hist);
  const auto h_sum = cuda::to_host(ctx, sum);
  const auto h_count = cuda::to_host(ctx, count);
  alignment_result out;
  out.t = t;
  out.mean_rank.assign(static_cast<std::size_t>(rows), std::numeric_limits<double>::quiet_NaN());
  out.selected_count.assign(static_cast<std::size_t>(rows), 0);
  out.rank_histogram.assign(static_cast<std::size_t>(k), 0);
  for (index_t r = 0; r < rows; ++r) {
    const auto ru = static_cast<std::size_t>(r);
    const std::uint32_t n = h_count(r, 0);
    out.selected_count[ru] = n;
    if (n == 0) {
      ++out.rows_without_selection;
      continue;
    }
    out.mean_rank[ru] = h_sum(r, 0) / n;
    out.pairs += n;
    for (index_t e = 0; e < k; ++e) out.rank_histogram[static_cast<std::size_t>(e)] += h_hist(r, e);
  }
  return out;
}

/// Ranks of the selected experts at a device state x (B, D), time t, blended velocity v (B, D):
/// x0_hat = x - t v, embedded by phi (on the device), against the centroids (K, phi.dim(D)).
template <class T, class Embedding = identity_embedding>
  requires embedding<Embedding, T, cuda_space>
[[nodiscard]] alignment_result alignment_ranks(const cuda_context& ctx, batch_view<const T, cuda_space> x, double t,
                                               batch_view<const T, cuda_space> v,
                                               batch_view<const std::uint8_t, cuda_space> selected,
                                               batch_view<const T, cuda_space> centroids, const Embedding& phi = {}) {
  const auto embedded = detail::embedded_data_prediction(ctx, "ddm::diagnostics::alignment_ranks", x, t, v, phi);
  return selected_ranks(ctx, embedded.cview(), selected, centroids, t);
}

/// The routing observer's instruments on device views: the Gram-matrix disagreement, the angles,
/// and the selected pairs counted on the host from one copy of the (B, K) selection. Each waits
/// for the stream.
template <>
struct routing_instruments<cuda_space> {
  template <class T>
  [[nodiscard]] static std::vector<double> disagreement(const cuda_context& ctx,
                                                        std::span<const batch_view<const T, cuda_space>> experts) {
    return expert_disagreement(ctx, experts);
  }
  template <class T>
  [[nodiscard]] static angular_deviation_result angles(const cuda_context& ctx,
                                                       std::span<const batch_view<const T, cuda_space>> experts,
                                                       batch_view<const T, cuda_space> blended,
                                                       batch_view<const std::uint8_t, cuda_space> selected) {
    return angular_deviation(ctx, experts, blended, selected);
  }
  [[nodiscard]] static std::size_t selected_pairs(const cuda_context& ctx,
                                                  batch_view<const std::uint8_t, cuda_space> selected) {
    const auto h = cuda::to_host(ctx, selected);
    return routing_instruments<host_space>::selected_pairs(host_context{}, h.cview());
  }
};

}  // namespace diagnostics
}  // namespace ddm
