#pragma once
// The execution context of the CUDA memory space: the stream that device work is enqueued on.
//
// Every ddm operation on device views takes a context and enqueues its kernels, copies,
// allocations and frees on the context's stream, in call order; nothing waits for the device
// except operations that return a value to the host (max_scaled_rms, all_finite, copies into
// host memory), which synchronize the stream before they return.
//
// A default-constructed context uses stream handle 0: the legacy default stream, unless the
// translation unit is compiled with `--default-stream per-thread`, where handle 0 means the
// calling thread's default stream. The legacy default stream synchronizes with every blocking
// stream, which makes it the safe default for code that mixes ddm with other libraries. Pass a
// stream of your own (or ddm::cuda::stream) to overlap work or to run on the stream a framework
// such as PyTorch is using.
//
// Requires the CUDA toolkit (link ddm::cuda).

#include <cuda_runtime_api.h>

#include <utility>

#include "ddm/core/memory_space.hpp"
#include "ddm/cuda/error.hpp"

namespace ddm {

template <>
struct execution_context<cuda_space> {
  using space = cuda_space;

  /// The default stream (handle 0; see the header comment).
  constexpr execution_context() noexcept = default;
  /// Work is enqueued on `stream`. The context does not own it: the stream must outlive the
  /// context and every batch allocated through it (their memory is freed on that stream).
  constexpr explicit execution_context(cudaStream_t stream) noexcept : stream_(stream) {}

  [[nodiscard]] constexpr cudaStream_t stream() const noexcept { return stream_; }

  /// Block the calling thread until the work enqueued so far on the stream has finished. A fault
  /// of an earlier kernel on the stream is raised here as ddm::device_error.
  void synchronize() const { DDM_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

using cuda_context = execution_context<cuda_space>;

namespace cuda {

/// An owned CUDA stream, created non-blocking (it does not synchronize with the legacy default
/// stream, as PyTorch's streams do not) and destroyed with the object. Declare it before the
/// batches allocated through its context, so that they are freed before the stream goes.
class stream {
 public:
  stream() { DDM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
  stream(stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  stream& operator=(stream&& other) noexcept {
    if (this != &other) {
      destroy_();
      stream_ = std::exchange(other.stream_, nullptr);
    }
    return *this;
  }
  ~stream() { destroy_(); }

  [[nodiscard]] cudaStream_t get() const noexcept { return stream_; }
  /// A context that enqueues on this stream.
  [[nodiscard]] cuda_context context() const noexcept { return cuda_context(stream_); }

 private:
  void destroy_() noexcept {
    // Destruction waits for nothing: work still enqueued completes, then the stream goes.
    if (stream_ != nullptr && cudaStreamDestroy(stream_) != cudaSuccess) (void)cudaGetLastError();
    stream_ = nullptr;
  }

  cudaStream_t stream_ = nullptr;
};

}  // namespace cuda
}  // namespace ddm
