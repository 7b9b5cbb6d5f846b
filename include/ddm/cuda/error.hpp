#pragma once
// Checking the statuses of CUDA runtime calls. Every runtime call ddm makes goes through
// ddm::cuda::check, which turns a failure into a ddm::device_error whose message names the call:
//
//     ddm::cuda: cudaMallocAsync(1125899906842624 bytes) failed: out of memory (cudaErrorMemoryAllocation)
//
// Requires the CUDA toolkit (link ddm::cuda).

#include <cuda_runtime_api.h>

#include <string>

#include "ddm/core/error.hpp"

namespace ddm::cuda {

/// Raise ddm::device_error unless `status` is cudaSuccess. `call` names what was called (with
/// its interesting arguments). The runtime's record of the last error is cleared first: a failed
/// call that leaves the device usable (an allocation too large, an invalid argument) must not be
/// reported again by the next launch check.
inline void check(cudaError_t status, const char* call) {
  if (status == cudaSuccess) return;
  (void)cudaGetLastError();
  throw device_error(ddm::concat("ddm::cuda: ", call, " failed: ", cudaGetErrorString(status), " (",
                                         cudaGetErrorName(status), ")"));
}
inline void check(cudaError_t status, const std::string& call) { check(status, call.c_str()); }

/// Check the kernel launch just made on this thread. A launch reports configuration errors at
/// once; a fault inside the kernel surfaces at the next call that waits for it (a stream
/// synchronization or a copy to the host), which is checked in turn.
inline void check_launch(const char* kernel) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) check(status, ddm::concat("launch of ", kernel));
}

}  // namespace ddm::cuda

/// Evaluate a CUDA runtime call and raise ddm::device_error naming it (as written) if it fails.
#define DDM_CUDA_CHECK(call) ::ddm::cuda::check((call), #call)
