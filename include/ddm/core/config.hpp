#pragma once
// The one place in ddm that names compiler- and CUDA-specific keywords. Everything else uses
// these macros, so a host-only build never sees a CUDA keyword.

#include <cstddef>
#include <cstdint>

#define DDM_VERSION_MAJOR 0
#define DDM_VERSION_MINOR 1
#define DDM_VERSION_PATCH 0

#if defined(__CUDACC__) || defined(__CUDA_ARCH__)
#define DDM_HOST_DEVICE __host__ __device__
#define DDM_DEVICE __device__
#else
#define DDM_HOST_DEVICE
#define DDM_DEVICE
#endif

#if defined(__CUDA_ARCH__)
#define DDM_DEVICE_PASS 1
#else
#define DDM_DEVICE_PASS 0
#endif

// Loops whose only memory dependence is "out[j] depends on in[j]" (element-wise, possibly in
// place). The callers check that operands either coincide or do not overlap at all.
#if defined(__clang__)
#define DDM_PRAGMA_IVDEP _Pragma("clang loop vectorize(enable)")
#elif defined(__GNUC__) && !defined(__CUDACC__)
#define DDM_PRAGMA_IVDEP _Pragma("GCC ivdep")
#else
#define DDM_PRAGMA_IVDEP
#endif

// A function that only runs when something went wrong (it builds an error message and throws):
// kept out of line and out of the hot code, so that the checks calling it stay small enough to
// inline into every per-call path.
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDA_ARCH__)
#define DDM_COLD __attribute__((cold, noinline))
#else
#define DDM_COLD
#endif

// A function the compiler must keep out of line. Used where inlining measurably worsens the code
// of a hot kernel (the register allocation of its inner loop), not as a general hint.
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDA_ARCH__)
#define DDM_NOINLINE __attribute__((noinline))
#else
#define DDM_NOINLINE
#endif

namespace ddm {

/// Signed index type used for rows, columns and strides.
using index_t = std::ptrdiff_t;

}  // namespace ddm
