#pragma once
// fill_probe for device views: the same probe values as the host's (ddm/diagnostics/jacobian/
// probes.hpp). With it and row_ops<cuda_space> (ddm/cuda/core/row_ops.hpp) the Jacobian
// estimators of ddm/diagnostics/jacobian/ (jacobian_products, Hutchinson, power iteration, dense
// Jacobian) and the L_eff observer run on device views unchanged.
//
// Requires the CUDA toolkit (link ddm::cuda); include from CUDA translation units.

#include <cstdint>

#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/core/rng.hpp"
#include "ddm/diagnostics/jacobian/probes.hpp"

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
      <<<cuda::elementwise_grid(z.rows(), z.cols()), cuda::elementwise_block, 0, ctx.stream()>>>(
          z.data(), z.stride(), z.rows(), z.cols(), seed, stream);
  cuda::check_launch("ddm::diagnostics::fill_probe (rademacher_kernel)");
}

}  // namespace diagnostics
}  // namespace ddm
