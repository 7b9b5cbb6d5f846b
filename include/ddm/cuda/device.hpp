#pragma once
// Is there a CUDA device to run on? Tests and benchmarks ask before they touch the device, so that
// a machine without a GPU (or without a driver) skips them with the reason instead of failing.
// And which device is current, for the caches kept per device (occupancy, handles, plans).
//
// Requires the CUDA toolkit (link ddm::cuda).

#include <cuda_runtime_api.h>

#include <string>

#include "ddm/cuda/error.hpp"

namespace ddm::cuda {

/// True when at least one CUDA device is usable by this process. When it is not and `why` is
/// given, *why receives the runtime's reason (for instance "CUDA driver version is insufficient
/// for CUDA runtime version" on a machine without a driver).
[[nodiscard]] inline bool device_available(std::string* why = nullptr) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    if (why != nullptr) *why = cudaGetErrorString(status);
    return false;
  }
  if (count == 0) {
    if (why != nullptr) *why = "no CUDA device";
    return false;
  }
  return true;
}

/// The calling thread's current device (cudaGetDevice); device_error when the runtime fails.
[[nodiscard]] inline int current_device() {
  int device = 0;
  DDM_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

}  // namespace ddm::cuda
