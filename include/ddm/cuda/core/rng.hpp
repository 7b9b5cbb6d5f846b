#pragma once
// Philox noise in device batches: the same numbers as the host's fill_normal and fill_uniform
// (ddm/core/rng.hpp), element by element. Element (r, c) of a (rows, cols) view is variate number
// r * cols + c of (seed, stream), whatever the view's stride and the launch shape.
//
// Uniforms are exact integer arithmetic and agree with the host bit for bit. Normals go through
// log, sqrt, cos and sin in double, whose CUDA implementations are within 2 ulp of the host's
// libm: device and host normals agree to a few units in the last place of double, which in float
// storage is equality for almost every element and one ulp for the rest.
//
// Requires the CUDA toolkit (link ddm::cuda); include from CUDA translation units.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/rng.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"

namespace ddm {

namespace cuda::detail {

template <bool Normal, class T>
__global__ void __launch_bounds__(elementwise_block)
    philox_fill_kernel(T* x, index_t stride, index_t rows, index_t cols, std::uint64_t seed, std::uint64_t stream) {
  for (index_t r = blockIdx.y; r < rows; r += gridDim.y)
    for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < cols;
         j += static_cast<index_t>(gridDim.x) * blockDim.x) {
      const auto n = static_cast<std::uint64_t>(r) * static_cast<std::uint64_t>(cols) + static_cast<std::uint64_t>(j);
      x[r * stride + j] =
          static_cast<T>(Normal ? philox4x32::normal(seed, stream, n) : philox4x32::uniform(seed, stream, n));
    }
}

template <bool Normal, class T>
void philox_fill(const cuda_context& ctx, batch_view<T, cuda_space> x, std::uint64_t seed, std::uint64_t stream,
                 const char* what) {
  if (x.empty()) return;
  // Variate numbers follow the logical (rows, cols) layout, so a contiguous view may be covered
  // as one row of rows * cols values without changing them.
  const bool flat = x.is_contiguous();
  const index_t rows = flat ? 1 : x.rows();
  const index_t cols = flat ? x.size() : x.cols();
  philox_fill_kernel<Normal, T><<<elementwise_grid(rows, cols), elementwise_block, 0, ctx.stream()>>>(
      x.data(), x.stride(), rows, cols, seed, stream);
  check_launch(what);
}

}  // namespace cuda::detail

/// Fill a device view with standard normal noise, equal to the host's fill_normal of the same
/// shape, seed and stream (see the header comment for the last-ulp caveat).
template <class T>
void fill_normal(const cuda_context& ctx, batch_view<T, cuda_space> x, std::uint64_t seed, std::uint64_t stream = 0) {
  cuda::detail::philox_fill<true>(ctx, x, seed, stream, "ddm::fill_normal (philox_fill_kernel)");
}

/// Fill a device view with uniform [0, 1) values, bit for bit the host's fill_uniform.
template <class T>
void fill_uniform(const cuda_context& ctx, batch_view<T, cuda_space> x, std::uint64_t seed, std::uint64_t stream = 0) {
  cuda::detail::philox_fill<false>(ctx, x, seed, stream, "ddm::fill_uniform (philox_fill_kernel)");
}

}  // namespace ddm
