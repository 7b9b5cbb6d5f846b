#pragma once
// Page-locked host memory for small results that come back from the device on every call (the
// routed field's per-expert counts and status words).
//
// A copy from device memory into pageable host memory is staged by the driver and returns only
// when it is complete; into page-locked memory it is one DMA that the stream orders like a kernel,
// so a caller can enqueue it and then wait for the stream once. Allocating page-locked memory is
// slow (it maps pages for the device): allocate once, reuse.
//
// Requires the CUDA toolkit (link ddm::cuda).

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstring>
#include <span>
#include <type_traits>
#include <utility>

#include "ddm/core/error.hpp"
#include "ddm/cuda/error.hpp"

namespace ddm::cuda {

/// `size` values of T in page-locked host memory, zero-initialized. Move-only.
template <class T>
class pinned_buffer {
  static_assert(std::is_trivially_copyable_v<T>, "ddm::cuda::pinned_buffer holds trivially copyable values");

 public:
  pinned_buffer() = default;
  explicit pinned_buffer(std::size_t size) : size_(size) {
    if (size == 0) return;
    void* p = nullptr;
    check(cudaMallocHost(&p, size * sizeof(T)), ddm::concat("cudaMallocHost(", size * sizeof(T), " bytes)"));
    data_ = static_cast<T*>(p);
    std::memset(static_cast<void*>(data_), 0, size * sizeof(T));
  }
  pinned_buffer(const pinned_buffer&) = delete;
  pinned_buffer& operator=(const pinned_buffer&) = delete;
  pinned_buffer(pinned_buffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  pinned_buffer& operator=(pinned_buffer&& other) noexcept {
    if (this != &other) {
      release_();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~pinned_buffer() { release_(); }

  [[nodiscard]] T* data() noexcept { return data_; }
  [[nodiscard]] const T* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] T& operator[](std::size_t i) noexcept { return data_[i]; }
  [[nodiscard]] const T& operator[](std::size_t i) const noexcept { return data_[i]; }
  [[nodiscard]] std::span<T> span() noexcept { return {data_, size_}; }

 private:
  void release_() noexcept {
    // cudaFreeHost waits for the device; a failure here (a faulted device) is reported by the
    // next checked call.
    if (data_ != nullptr && cudaFreeHost(data_) != cudaSuccess) (void)cudaGetLastError();
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace ddm::cuda
