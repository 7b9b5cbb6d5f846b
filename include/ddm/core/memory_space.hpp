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

/// How work in `Space` is executed. Specialized per space.
template <class Space>
struct execution_context;

class workspace_pool;  // ddm/core/workspace_pool.hpp

/// The host context: how many threads the host primitives (the state algebra, per-row operations,
/// routing, the analytic DDM) may split their rows over. The default, one thread, runs every loop
/// inline on the calling thread. More threads take effect where ddm is compiled with OpenMP
/// (link ddm::openmp, or compile with -fopenmp; ddm::host_threads_available() says which), and the
/// results are the same bits for any thread count: each row is computed by one thread, in the
/// order one thread would use, and reductions over rows are exact (max, and, first index).
///
///     ddm::host_context ctx{.threads = 8};
///
/// OpenMP's thread pool is the one pool: a BLAS the user calls alongside should run one thread per
/// call (as examples/02_dit's backend sets OpenBLAS), or two pools fight over the cores.
template <>
struct execution_context<host_space> {
  using space = host_space;
  /// Threads the host primitives may use (>= 1).
  int threads = 1;
  /// The least work (about one scalar operation per unit) worth one more thread: a loop smaller
  /// than twice this runs inline, since waking a thread costs microseconds. Tests set it to 1 to
  /// split even tiny batches.
  index_t min_work_per_thread = index_t{1} << 15;
  /// Workspace that outlives a call (ddm/core/workspace_pool.hpp): with it, ddm::sample() keeps
  /// its stepper's buffers between calls instead of allocating them on every call. Not owned:
  /// the pool must outlive the context and every copy of it that is still used (batches and
  /// components keep copies). Null: nothing is kept.
  workspace_pool* scratch = nullptr;

  friend constexpr bool operator==(const execution_context&, const execution_context&) = default;
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
