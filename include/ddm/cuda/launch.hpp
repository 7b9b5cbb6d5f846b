#pragma once
// Launch shapes shared by ddm's kernels, and a device scalar for results returned to the host.
//
// Element-wise kernels cover a (rows, cols) view with rows on grid.y and columns on grid.x, one
// element per thread and grid-stride loops past the grid limits; a contiguous view is covered as
// a single row of rows * cols values, so that small rows do not leave blocks idle. Row reductions
// give each row one block of `reduce_block` threads.
//
// Requires the CUDA toolkit (link ddm::cuda).

#include <cuda_runtime_api.h>

#include <algorithm>

#include "ddm/core/config.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"

namespace ddm::cuda::detail {

/// Threads per block of the element-wise kernels.
inline constexpr int elementwise_block = 256;
/// Threads per block of the row reductions. Part of the reductions' results: the assignment of
/// values to threads and the order of the block's reduction tree follow from it.
inline constexpr int reduce_block = 256;

// Beyond these, kernels loop (grid-stride) instead of launching more blocks.
inline constexpr index_t max_grid_x = index_t{1} << 20;
inline constexpr index_t max_grid_y = 65535;
inline constexpr index_t max_reduce_grid = index_t{1} << 20;

/// Grid of an element-wise kernel over `rows` rows of `cols` values (both > 0).
[[nodiscard]] inline dim3 elementwise_grid(index_t rows, index_t cols) {
  const index_t bx = std::min((cols + elementwise_block - 1) / elementwise_block, max_grid_x);
  const index_t by = std::min(rows, max_grid_y);
  return {static_cast<unsigned>(bx), static_cast<unsigned>(by), 1U};
}

/// Grid of a row reduction over `rows` rows (> 0): one block per row.
[[nodiscard]] inline dim3 reduce_grid(index_t rows) {
  return {static_cast<unsigned>(std::min(rows, max_reduce_grid)), 1U, 1U};
}

/// One value of type T in device memory, allocated on the context's stream (zeroed there), for a
/// kernel to write a result into; read() brings it to the host.
template <class T>
class device_scalar {
 public:
  explicit device_scalar(const cuda_context& ctx) : ctx_(ctx) {
    check(cudaMallocAsync(reinterpret_cast<void**>(&p_), sizeof(T), ctx_.stream()),
          "cudaMallocAsync(device scalar)");
    try {
      DDM_CUDA_CHECK(cudaMemsetAsync(p_, 0, sizeof(T), ctx_.stream()));
    } catch (...) {
      release_();
      throw;
    }
  }
  device_scalar(const device_scalar&) = delete;
  device_scalar& operator=(const device_scalar&) = delete;
  ~device_scalar() { release_(); }

  [[nodiscard]] T* get() const noexcept { return p_; }

  /// Copy the value to the host and wait for it (a fault of the kernel that wrote it surfaces
  /// here).
  [[nodiscard]] T read() const {
    T value{};
    DDM_CUDA_CHECK(cudaMemcpyAsync(&value, p_, sizeof(T), cudaMemcpyDeviceToHost, ctx_.stream()));
    ctx_.synchronize();
    return value;
  }

 private:
  void release_() noexcept {
    if (p_ != nullptr && cudaFreeAsync(p_, ctx_.stream()) != cudaSuccess) (void)cudaGetLastError();
    p_ = nullptr;
  }

  cuda_context ctx_;
  T* p_ = nullptr;
};

}  // namespace ddm::cuda::detail
