#pragma once
// Launch shapes shared by ddm's kernels and a warp sum (public, in ddm::cuda: kernels outside the
// library use them too), then the library's own machinery in ddm::cuda::detail: 16-byte vector
// access for the streaming kernels, a device scalar for results returned to the host and the
// first-failure record of the checking kernels.
//
// Simple element-wise kernels (fills of noise, checks) cover a (rows, cols) view with rows on
// grid.y and columns on grid.x, one element per thread and grid-stride loops past the grid
// limits; a contiguous view is covered as a single row of rows * cols values, so that small rows
// do not leave blocks idle. Row reductions give each row one block of `reduce_block` threads.
//
// The streaming kernels of the state algebra (lincomb, fill) are memory-bound and are written to
// run at the speed of a device-to-device copy (see stream_layout below):
//   - 16-byte loads and stores (float4 / double2 worth of values) on rows whose operands share
//     their alignment, with the unaligned head and the tail of each row done one value at a time;
//   - several independent 16-byte loads per thread and operand in flight (unrolled), so that the
//     bytes in flight per SM cover the memory latency;
//   - a grid of exactly the blocks that can be resident at once (SM count x occupancy, queried
//     once per kernel and device) striding over the data, and rows on grid.y, so that no
//     per-element division or modulo is needed for strided views.
//
// Requires the CUDA toolkit (link ddm::cuda).

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "ddm/core/config.hpp"
#include "ddm/cuda/context.hpp"
#include "ddm/cuda/device.hpp"
#include "ddm/cuda/error.hpp"

namespace ddm::cuda {

// ---------------------------------------------------------------------------------------------
// Launch geometry, public so that kernels outside the library (the DiT of examples/02_dit) launch
// with the same shapes and limits.

/// Threads per block of the element-wise kernels.
inline constexpr int elementwise_block = 256;
/// Threads per block of the row reductions. Part of the reductions' results: the assignment of
/// values to threads and the order of the block's reduction tree follow from it.
inline constexpr int reduce_block = 256;

// Beyond these, kernels loop (grid-stride) instead of launching more blocks.
inline constexpr index_t max_grid_x = index_t{1} << 20;
inline constexpr index_t max_grid_y = 65535;
inline constexpr index_t max_reduce_grid = index_t{1} << 20;

/// Grid of an element-wise kernel over `rows` rows of `cols` values: columns on grid.x in blocks
/// of elementwise_block, rows on grid.y, each capped at the grid limits (the kernel strides past
/// them) and at least 1, so that an empty extent still gives a valid launch.
[[nodiscard]] inline dim3 elementwise_grid(index_t rows, index_t cols) {
  const index_t bx = std::clamp<index_t>((cols + elementwise_block - 1) / elementwise_block, 1, max_grid_x);
  const index_t by = std::clamp<index_t>(rows, 1, max_grid_y);
  return {static_cast<unsigned>(bx), static_cast<unsigned>(by), 1U};
}

/// Grid of a row reduction over `rows` rows (> 0): one block per row.
[[nodiscard]] inline dim3 reduce_grid(index_t rows) {
  return {static_cast<unsigned>(std::min(rows, max_reduce_grid)), 1U, 1U};
}

/// Threads per block of the kernels that give each row of a (B, K) decision one thread.
inline constexpr int row_block = 128;

/// Grid of a kernel with one thread per row, row_block rows per block.
[[nodiscard]] inline unsigned row_grid(index_t rows) {
  return static_cast<unsigned>(std::clamp<index_t>((rows + row_block - 1) / row_block, 1, max_grid_x));
}

/// Blocks of `kernel` (at `block` threads) that the current device holds resident at once: SM
/// count times occupancy. Queried once per call site (`cache`, one per kernel instantiation) and
/// device, then read without a runtime call.
template <class Kernel>
[[nodiscard]] index_t resident_blocks(Kernel kernel, int block, std::array<std::atomic<int>, 64>& cache) {
  const int device = current_device();
  if (device >= 0 && device < 64) {
    const int known = cache[static_cast<std::size_t>(device)].load(std::memory_order_relaxed);
    if (known > 0) return known;
  }
  int sms = 0;
  int per_sm = 0;
  DDM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  DDM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, block, 0));
  const int blocks = std::max(1, sms * std::max(1, per_sm));
  if (device >= 0 && device < 64) cache[static_cast<std::size_t>(device)].store(blocks, std::memory_order_relaxed);
  return blocks;
}

/// Block shape of the row-mapped kernels (gather, scatter-add, combine): blockDim.x threads along
/// a row (32 to elementwise_block, as the row's work needs), blockDim.y rows per block.
struct row_blocks {
  dim3 block;
  dim3 grid;
};

/// The row-mapped shape for `rows` rows of `work_items` each, `per_thread` items per thread per
/// pass, with no more blocks along a row than `resident` (see resident_blocks).
[[nodiscard]] inline row_blocks row_mapped_shape(index_t rows, index_t work_items, int per_thread, index_t resident) {
  index_t tx = 32;
  while (tx < elementwise_block && tx * per_thread < work_items) tx *= 2;
  const index_t ty = elementwise_block / tx;
  const index_t bx = std::clamp<index_t>((work_items + tx * per_thread - 1) / (tx * per_thread), 1, resident);
  const index_t by = std::clamp<index_t>((rows + ty - 1) / ty, 1, max_grid_y);
  return {dim3(static_cast<unsigned>(tx), static_cast<unsigned>(ty), 1U),
          dim3(static_cast<unsigned>(bx), static_cast<unsigned>(by), 1U)};
}

// ---------------------------------------------------------------------------------------------
// Warp reduction

/// The sum of v over the 32 lanes of a full warp, in every lane: a fixed xor butterfly (offsets
/// 16, 8, 4, 2, 1), so the same inputs give the same bits on every run. All 32 lanes must call it.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffU, v, offset);
  return v;
}

}  // namespace ddm::cuda

namespace ddm::cuda::detail {

// ---------------------------------------------------------------------------------------------
// 16-byte vector access

/// W values of T, aligned as one access of W * sizeof(T) bytes (16 for the vector path, one
/// value for the scalar path).
template <class T, int W>
struct alignas(W * sizeof(T)) pack {
  T v[W];
};

/// How many values of T one 16-byte access moves: 4 floats, 2 doubles; 1 (no vector path) for
/// other types.
template <class T>
inline constexpr int vector_width = std::is_same_v<T, float> ? 4 : (std::is_same_v<T, double> ? 2 : 1);

/// Load access k (values k W .. k W + W - 1) from `base`, which is 16-byte aligned on the vector
/// path, through the read-only (non-coherent) data path. Valid also when the kernel writes the
/// same array, provided every value is read, before it is written, only by the thread that
/// writes it, and never read again: a stale cache line can then only hold values nobody has
/// written yet. The element-wise kernels satisfy this, which makes in-place updates (out == an
/// operand) safe.
///
/// The address is formed on a pointer to the vector type (base + k), not on T*: pointer
/// arithmetic on T* lets the compiler's loop strength reduction lose the 16-byte alignment and
/// split the access into four.
template <class T, int W>
__device__ __forceinline__ pack<T, W> load_stream(const T* base, index_t k) {
  pack<T, W> out;
  if constexpr (std::is_same_v<T, float> && W == 4) {
    const float4 q = __ldg(reinterpret_cast<const float4*>(base) + k);
    out.v[0] = q.x;
    out.v[1] = q.y;
    out.v[2] = q.z;
    out.v[3] = q.w;
  } else if constexpr (std::is_same_v<T, double> && W == 2) {
    const double2 q = __ldg(reinterpret_cast<const double2*>(base) + k);
    out.v[0] = q.x;
    out.v[1] = q.y;
  } else if constexpr (W == 1 && (std::is_same_v<T, float> || std::is_same_v<T, double>)) {
    out.v[0] = __ldg(base + k);
  } else {
    static_assert(W == 1, "ddm: 16-byte access is for float and double");
    out.v[0] = base[k];
  }
  return out;
}

/// Store access k to `base` as one access (st.global.v4.f32 / v2.f64 on the vector path).
template <class T, int W>
__device__ __forceinline__ void store_stream(T* base, index_t k, const pack<T, W>& value) {
  if constexpr (std::is_same_v<T, float> && W == 4) {
    reinterpret_cast<float4*>(base)[k] = make_float4(value.v[0], value.v[1], value.v[2], value.v[3]);
  } else if constexpr (std::is_same_v<T, double> && W == 2) {
    reinterpret_cast<double2*>(base)[k] = make_double2(value.v[0], value.v[1]);
  } else {
    static_assert(W == 1, "ddm: 16-byte access is for float and double");
    base[k] = value.v[0];
  }
}

/// How a streaming kernel walks the rows of its operands: per row, `head` values one at a time
/// (until the operands reach a 16-byte boundary), then `vectors` accesses of `width` values,
/// then the rest of the row one at a time. The vector path needs every operand to sit at the
/// same offset from a 16-byte boundary, in every row (so row strides must be multiples of 16
/// bytes unless there is one row); otherwise width is 1 and every value goes one at a time.
struct stream_layout {
  int width = 1;
  index_t head = 0;
  index_t vectors = 0;
};

[[nodiscard]] inline std::uintptr_t misalignment(const void* p) noexcept {
  return reinterpret_cast<std::uintptr_t>(p) % 16U;
}

/// The layout of `rows` rows of `cols` values of T for operands at `pointers` with row `strides`.
template <class T, std::size_t M>
[[nodiscard]] stream_layout make_stream_layout(const std::array<const void*, M>& pointers,
                                               const std::array<index_t, M>& strides, index_t rows, index_t cols) {
  constexpr int w = vector_width<T>;
  stream_layout layout{1, 0, cols};
  if constexpr (w > 1) {
    const std::uintptr_t offset = misalignment(pointers[0]);
    if (offset % sizeof(T) != 0) return layout;
    for (std::size_t i = 0; i < M; ++i) {
      if (misalignment(pointers[i]) != offset) return layout;
      if (rows > 1 && (static_cast<std::size_t>(strides[i]) * sizeof(T)) % 16U != 0) return layout;
    }
    const auto head = std::min<index_t>(static_cast<index_t>(((16U - offset) % 16U) / sizeof(T)), cols);
    layout = {w, head, (cols - head) / w};
  }
  return layout;
}

/// Grid of a streaming kernel: grid.x strides over a row's `work_items` (each thread takes
/// `per_thread` of them per pass), with no more blocks than can be resident; grid.y takes one
/// row per block (up to the grid limit, then strides), leaving the balance of many rows to the
/// hardware's block scheduler.
[[nodiscard]] inline dim3 stream_grid(index_t rows, index_t work_items, int per_thread, index_t resident) {
  const index_t per_block = index_t{elementwise_block} * per_thread;
  const index_t bx = std::clamp<index_t>((work_items + per_block - 1) / per_block, 1, resident);
  const index_t by = std::clamp<index_t>(rows, 1, max_grid_y);
  return {static_cast<unsigned>(bx), static_cast<unsigned>(by), 1U};
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

// The first failure in some order is kept as `limit - index` under an atomic maximum, so that the
// smallest index wins whatever the order the threads run in, and 0 means "none".
__device__ __forceinline__ void record_first(int* word, index_t limit, index_t index) {
  atomicMax(word, static_cast<int>(limit - index));
}
[[nodiscard]] inline index_t decode_first(int word, index_t limit) { return word > 0 ? limit - word : -1; }

}  // namespace ddm::cuda::detail
