#pragma once
// Memory spaces and execution contexts.
//
// A memory space is a tag type carried by every view, so that a kernel written for one space
// cannot be handed memory from another: the mismatch is a compile error, not a crash. An
// execution context says *how* work in a space runs (on the host: inline on the calling thread;
// on a CUDA device: on a stream). Every operation of the state algebra takes the context of the
// space its operands live in.

#include <concepts>
#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>

#include "ddm/core/config.hpp"

namespace ddm {

/// Ordinary host memory, readable and writable by the calling thread.
struct host_space {
  static constexpr bool host_accessible = true;
  static constexpr const char* name = "host";
};

/// Global memory of a CUDA device. The tag is declared here so that host code can name device
/// views in signatures; every operation on it lives under ddm/cuda/.
struct cuda_space {
  static constexpr bool host_accessible = false;
  static constexpr const char* name = "cuda";
};

template <class S>
concept memory_space = requires {
  { S::host_accessible } -> std::convertible_to<bool>;
  { S::name } -> std::convertible_to<const char*>;
};

/// How work in `Space` is executed. Specialized per space; the host one is stateless.
template <class Space>
struct execution_context;

template <>
struct execution_context<host_space> {
  using space = host_space;
};

using host_context = execution_context<host_space>;

/// Allocation of raw storage in a memory space. Specialized per space.
template <class Space>
struct memory_resource;

template <>
struct memory_resource<host_space> {
  /// Cache-line alignment keeps rows of contiguous batches friendly to vector loads.
  static constexpr std::size_t alignment = 64;

  static void* allocate(const host_context& /*ctx*/, std::size_t bytes) {
    if (bytes == 0) return nullptr;
    return ::operator new(bytes, std::align_val_t{alignment});
  }
  static void deallocate(const host_context& /*ctx*/, void* p, std::size_t /*bytes*/) noexcept {
    if (p != nullptr) ::operator delete(p, std::align_val_t{alignment});
  }
  static void zero(const host_context& /*ctx*/, void* p, std::size_t bytes) {
    if (bytes != 0) std::memset(p, 0, bytes);
  }
};

}  // namespace ddm
