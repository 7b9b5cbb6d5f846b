#pragma once
// Is there a CUDA device to run on? Tests and benchmarks ask before they touch the device, so that
// a machine without a GPU (or without a driver) skips them with the reason instead of failing.
//
// Requires the CUDA toolkit (link ddm::cuda).

#include <cuda_runtime_api.h>

#include <string>

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

}  // namespace ddm::cuda
