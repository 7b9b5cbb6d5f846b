#pragma once
// What the device instruments share, as ddm/diagnostics/instruments/expert_views.hpp is for the
// host's: K expert views read as one strided layout (copied into one when they are not), the
// check of a (B, K) selection, and the refusal of NaN or infinite values with the host's message.
//
// Requires the CUDA toolkit (link ddm::cuda); include from CUDA translation units.

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/core/algebra.hpp"
#include "ddm/cuda/routing/grouping.hpp"
#include "ddm/cuda/transfer.hpp"
#include "ddm/diagnostics/instruments/expert_views.hpp"

namespace ddm {

namespace cuda::detail {

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
}  // namespace ddm
