#pragma once
// Softmax of routing logits on device memory: the CUDA backend of ddm/routing/softmax.hpp
// (routing_softmax<cuda_space>), one thread per row running the host's softmax_row, compiled for
// the device. A non-finite logit is recorded in a device word as the first failing index in
// row-major order (record_first in launch.hpp: deterministic); softmax_rows reads that word back,
// so it waits for the stream.
//
// Sizes: B * K must be below 2^31 (row indices are int32).
//
// Requires the CUDA toolkit (link ddm::cuda); include from CUDA translation units.

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"
#include "ddm/cuda/launch.hpp"
#include "ddm/cuda/memory_resource.hpp"
#include "ddm/routing/softmax.hpp"

namespace ddm {
namespace cuda::detail {

inline void check_routing_size(const char* where, index_t rows, index_t experts) {
  if (rows > 0 && experts > 0 && rows > (std::numeric_limits<std::int32_t>::max() - 1) / experts)
    throw shape_error(ddm::concat(where, ": ", rows, " rows x ", experts,
                                          " experts, expected B * K < 2^31 (row indices are int32)"));
}

template <class T>
__global__ void __launch_bounds__(row_block)
    softmax_kernel(const T* logits, index_t sl, T* probs, index_t sp, index_t rows, int k, double inv_temperature,
                   int* first_bad) {
  for (index_t r = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const int bad = softmax_row(logits + r * sl, k, inv_temperature, probs + r * sp);
    if (bad >= 0) record_first(first_bad, rows * k, r * k + bad);
  }
}

}  // namespace cuda::detail

/// Softmax of device rows: one thread per row (softmax_row). Waits for the stream to learn
/// whether a logit was non-finite.
template <>
struct routing_softmax<cuda_space> {
  template <class T>
  static softmax_failure run(const cuda_context& ctx, batch_view<const T, cuda_space> logits, double inv_temperature,
                             batch_view<T, cuda_space> probs) {
    const index_t rows = logits.rows();
    const int k = static_cast<int>(logits.cols());
    cuda::detail::check_routing_size("ddm::softmax_rows", rows, k);
    const cuda::detail::device_scalar<int> first_bad(ctx);
    cuda::detail::softmax_kernel<T><<<cuda::row_grid(rows), cuda::row_block, 0, ctx.stream()>>>(
        logits.data(), logits.stride(), probs.data(), probs.stride(), rows, k, inv_temperature, first_bad.get());
    cuda::check_launch("ddm::softmax_rows (softmax_kernel)");
    const index_t bad = cuda::detail::decode_first(first_bad.read(), rows * k);
    if (bad < 0) return {};
    const index_t row = bad / k;
    const int expert = static_cast<int>(bad % k);
    T value{};
    DDM_CUDA_CHECK(cudaMemcpyAsync(&value, logits.row(row) + expert, sizeof(T), cudaMemcpyDeviceToHost, ctx.stream()));
    ctx.synchronize();
    return {row, expert, static_cast<double>(value)};
  }
};

}  // namespace ddm
