#pragma once
// Device memory for ddm::batch<T, ddm::cuda_space>: stream-ordered allocation.
//
// Allocation, zeroing and freeing are enqueued on the context's stream (cudaMallocAsync,
// cudaMemsetAsync, cudaFreeAsync) from the device's default memory pool, so a batch allocated
// inside a sampler step costs no device-wide synchronization and its memory is reused by later
// allocations on the same stream. A batch is freed on the stream it was allocated on; work on
// other streams that uses it must be ordered before the free (an event, or a synchronization).
//
// Requires the CUDA toolkit (link ddm::cuda).

#include <cuda_runtime_api.h>

#include <cstddef>

#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/error.hpp"

namespace ddm {

template <>
struct memory_resource<cuda_space> {
  /// cudaMallocAsync returns memory aligned to at least 256 bytes.
  static constexpr std::size_t alignment = 256;

  static void* allocate(const cuda_context& ctx, std::size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    const cudaError_t status = cudaMallocAsync(&p, bytes, ctx.stream());
    if (status != cudaSuccess) cuda::check(status, ddm::concat("cudaMallocAsync(", bytes, " bytes)"));
    return p;
  }

  static void deallocate(const cuda_context& ctx, void* p, std::size_t /*bytes*/) noexcept {
    // Called from destructors, so a failure cannot be raised here. The failures possible at this
    // point are a device that has already faulted (sticky: the next checked call reports it) and
    // a stream destroyed too early (a misuse the header comment of context.hpp warns about).
    if (p != nullptr && cudaFreeAsync(p, ctx.stream()) != cudaSuccess) (void)cudaGetLastError();
  }

  static void zero(const cuda_context& ctx, void* p, std::size_t bytes) {
    if (bytes == 0) return;
    const cudaError_t status = cudaMemsetAsync(p, 0, bytes, ctx.stream());
    if (status != cudaSuccess) cuda::check(status, ddm::concat("cudaMemsetAsync(", bytes, " bytes)"));
  }
};

}  // namespace ddm
