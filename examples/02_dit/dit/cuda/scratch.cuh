#pragma once
// Device scratch of the DiT's CUDA backend: the 16-bit copy of a matrix product's input and
// cuBLASLt's workspace, one pair per (thread, device, stream), so that concurrent forwards on
// different streams never share it and a forward on one stream reuses it in stream order.
//
// Ownership: each thread's scratch lives in a thread_local table whose entries own their buffers
// (stream_scratch frees them in its destructor), so the memory is returned when the thread ends,
// and dit::release_cuda_scratch(ctx) returns one stream's pair at once (call it before destroying
// a stream that ran forwards, or a program that makes a stream per forward keeps a pair per
// stream until its thread ends). Include from CUDA translation units.

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <utility>

#include <ddm/core/error.hpp>
#include <ddm/cuda/context.hpp>
#include <ddm/cuda/error.hpp>

#include "dit/cuda/launch.cuh"

namespace dit::gpu {

// 32 MiB: what cuBLAS itself reserves on Hopper; enough for every algorithm the heuristic offers.
inline constexpr std::size_t lt_workspace_bytes = std::size_t{32} << 20;

/// The scratch pair of one (thread, device, stream); grown on its stream as needed, freed by its
/// destructor or by release().
class stream_scratch {
 public:
  explicit stream_scratch(int device) noexcept : device_(device) {}
  stream_scratch(const stream_scratch&) = delete;
  stream_scratch& operator=(const stream_scratch&) = delete;

  /// At thread exit the stream may be gone: wait for the device, then free on the legacy stream.
  /// Errors are ignored: at process exit the runtime may be shutting down, and nothing could be
  /// done about a failed free in a destructor.
  ~stream_scratch() {
    if (operand_ == nullptr && workspace_ == nullptr) return;
    int current = -1;
    if (cudaGetDevice(&current) != cudaSuccess) return;
    if (current != device_ && cudaSetDevice(device_) != cudaSuccess) return;
    if (cudaDeviceSynchronize() == cudaSuccess) {
      if (operand_ != nullptr) (void)cudaFreeAsync(operand_, nullptr);
      if (workspace_ != nullptr) (void)cudaFreeAsync(workspace_, nullptr);
    }
    if (current != device_) (void)cudaSetDevice(current);
  }

  /// At least `words` 16-bit values, valid on ctx's stream.
  std::uint16_t* operand(const ddm::cuda_context& ctx, std::size_t words) {
    if (operand_words_ < words) {
      if (operand_ != nullptr) DDM_CUDA_CHECK(cudaFreeAsync(operand_, ctx.stream()));
      operand_ = nullptr;
      operand_words_ = 0;
      void* p = nullptr;
      ddm::cuda::check(cudaMallocAsync(&p, words * sizeof(std::uint16_t), ctx.stream()),
                       ddm::concat("cudaMallocAsync(", words * sizeof(std::uint16_t),
                                   " bytes) for dit::linear's 16-bit operand"));
      operand_ = static_cast<std::uint16_t*>(p);
      operand_words_ = words;
    }
    return operand_;
  }

  /// cuBLASLt's workspace of lt_workspace_bytes, valid on ctx's stream.
  void* workspace(const ddm::cuda_context& ctx) {
    if (workspace_ == nullptr) {
      ddm::cuda::check(cudaMallocAsync(&workspace_, lt_workspace_bytes, ctx.stream()),
                       ddm::concat("cudaMallocAsync(", lt_workspace_bytes, " bytes) for cuBLASLt's workspace"));
    }
    return workspace_;
  }

  /// Frees both buffers in the order of ctx's stream (the one they were used on).
  void release(const ddm::cuda_context& ctx) {
    if (operand_ != nullptr) DDM_CUDA_CHECK(cudaFreeAsync(operand_, ctx.stream()));
    operand_ = nullptr;
    operand_words_ = 0;
    if (workspace_ != nullptr) DDM_CUDA_CHECK(cudaFreeAsync(workspace_, ctx.stream()));
    workspace_ = nullptr;
  }

 private:
  int device_;
  std::uint16_t* operand_ = nullptr;
  std::size_t operand_words_ = 0;
  void* workspace_ = nullptr;
};

/// The calling thread's scratch pairs, one per (device, stream); freed when the thread ends.
class scratch_table {
 public:
  stream_scratch& get(int device, cudaStream_t stream) {
    auto& entry = entries_[{device, stream}];
    if (!entry) entry = std::make_unique<stream_scratch>(device);
    return *entry;
  }

  void release(const ddm::cuda_context& ctx, int device) {
    const auto it = entries_.find({device, ctx.stream()});
    if (it == entries_.end()) return;
    it->second->release(ctx);
    entries_.erase(it);
  }

 private:
  std::map<std::pair<int, cudaStream_t>, std::unique_ptr<stream_scratch>> entries_;
};

inline scratch_table& thread_scratch() {
  thread_local scratch_table table;
  return table;
}

inline stream_scratch& scratch_for(const ddm::cuda_context& ctx) {
  return thread_scratch().get(current_device(), ctx.stream());
}

inline std::uint16_t* operand_buffer(const ddm::cuda_context& ctx, std::size_t words) {
  return scratch_for(ctx).operand(ctx, words);
}

inline void* lt_workspace(const ddm::cuda_context& ctx) { return scratch_for(ctx).workspace(ctx); }

}  // namespace dit::gpu

namespace dit {

/// Frees the calling thread's CUDA-backend scratch for ctx's stream (the 16-bit operand and
/// cuBLASLt's 32 MiB workspace), in stream order; the next forward on that stream allocates
/// afresh. For programs that create and destroy streams: call it before destroying one.
inline void release_cuda_scratch(const ddm::cuda_context& ctx) {
  gpu::thread_scratch().release(ctx, gpu::current_device());
}

}  // namespace dit
