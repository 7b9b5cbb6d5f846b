// ddm-dit --device cuda: the same run as on the host (driver.hpp), with the folder loaded into
// device memory and every model, the routed field, the sampler and the diagnostics on one CUDA
// stream. Without a usable GPU it says why and returns 1.

#include <cstdio>
#include <string>

#include "dit/backend_cuda.cuh"
#include "driver.hpp"

int ddm_dit::run_cuda(const options& o) {
  std::string why;
  if (!ddm::cuda::device_available(&why)) {
    std::fprintf(stderr, "ddm-dit: --device cuda: no usable CUDA device (%s)\n", why.c_str());
    return 1;
  }
  int device = 0;
  DDM_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  DDM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  const std::string backend = std::string("CUDA (") + prop.name + ", TF32 " + (dit::cuda_tf32() ? "on" : "off") + ")";
  const ddm::cuda::stream stream;  // outlives every batch of the run
  return run_checkpoint<ddm::cuda_space>(o, stream.context(), backend.c_str());
}
