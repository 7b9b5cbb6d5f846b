#pragma once
// The pieces every kernel file of the DiT's CUDA backend shares: the launch shape of its
// row-by-column kernels and the warp sum (the library's, from ddm/cuda/launch.hpp), the TF32
// switch, float <-> 16-bit stores, the warp maximum, and the dispatch on a 16-bit storage type.
// Include from CUDA translation units.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <atomic>

#include <ddm/core/config.hpp>
#include <ddm/core/error.hpp>
#include <ddm/cuda/device.hpp>
#include <ddm/cuda/launch.hpp>

#include "dit/backend.hpp"

namespace dit {

// The CUDA backend's kernels, launchers and caches (dit/cuda/*.cuh), named on their own so that
// tests can reach the index maps and the alignment rule; dit::backend<ddm::cuda_space>
// (dit/backend_cuda.cuh) is the interface.
namespace gpu {
inline std::atomic<bool>& tf32_flag() noexcept {
  static std::atomic<bool> flag{false};
  return flag;
}
}  // namespace gpu

/// Lets float-weight matrix products run on TF32 tensor cores (10-bit mantissas in the products,
/// float accumulation), for every later call on any thread. Off by default: float weights get
/// FP32 products, as PyTorch's default (torch.backends.cuda.matmul.allow_tf32 = False).
inline void set_cuda_tf32(bool on) noexcept { gpu::tf32_flag().store(on); }
[[nodiscard]] inline bool cuda_tf32() noexcept { return gpu::tf32_flag().load(); }

namespace gpu {

using ddm::index_t;

// The library's launch geometry and warp sum (ddm/cuda/launch.hpp): the element-wise kernels run
// elementwise_block threads on elementwise_grid's (columns, rows) grid, the same shape as the
// library's, and reduce rows with its butterfly.
using ddm::cuda::current_device;
using ddm::cuda::elementwise_block;
using ddm::cuda::elementwise_grid;
using ddm::cuda::max_grid_x;
using ddm::cuda::max_grid_y;
using ddm::cuda::warp_sum;

inline void require(bool ok, const char* where, const char* what) {
  if (!ok) throw ddm::shape_error(ddm::concat(where, ": ", what));
}

// Stores a float result as the element type of an output: float, or a 16-bit operand of the
// next matrix product (rounded to nearest even).
__device__ inline void put(float* p, float v) { *p = v; }
__device__ inline void put(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ inline void put(__half* p, float v) { *p = __float2half_rn(v); }

__device__ inline float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}


// f(H{}) with H the 16-bit type of a storage (bf16 or f16).
template <class F>
void with_16bit(weight_storage storage, F&& f) {
  if (storage == weight_storage::bf16) {
    f(__nv_bfloat16{});
  } else {
    f(__half{});
  }
}

}  // namespace gpu
}  // namespace dit
