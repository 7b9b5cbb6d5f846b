// The counter-based generator gives the same numbers on the device as on the host.
// Compiled whenever CUDA is on; skips with a reason when no GPU is present.

#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <vector>

#include <ddm/core/rng.hpp>

namespace {

__global__ void normals_kernel(double* out, unsigned long long n, unsigned long long seed, unsigned long long stream) {
  const unsigned long long i = blockIdx.x * static_cast<unsigned long long>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = ddm::philox4x32::normal(seed, stream, i);
}

bool gpu_present(std::string& why) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    why = status != cudaSuccess ? cudaGetErrorString(status) : "no CUDA device";
    return false;
  }
  return true;
}

TEST(PhiloxDevice, SameNormalsAsTheHost) {
  std::string why;
  if (!gpu_present(why)) GTEST_SKIP() << "no GPU: " << why;
  constexpr unsigned long long n = 1 << 16;
  double* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, n * sizeof(double)), cudaSuccess);
  normals_kernel<<<(n + 255) / 256, 256>>>(d, n, 1234, 5);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<double> device(n);
  ASSERT_EQ(cudaMemcpy(device.data(), d, n * sizeof(double), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d);
  // The integer stream is identical; log/sqrt/sin/cos of CUDA's libm are within 2 ulp of the
  // host's, so compare in float (what batches of noise are stored in) to within one ulp.
  int differ = 0;
  for (unsigned long long i = 0; i < n; ++i) {
    const float h = static_cast<float>(ddm::philox4x32::normal(1234, 5, i));
    const float g = static_cast<float>(device[i]);
    if (h != g) {
      ++differ;
      EXPECT_NEAR(g, h, 2e-7F * (1 + std::abs(h))) << i;
    }
  }
  std::printf("[ measured ] %d of %llu float normals differ from the host's (by at most one ulp)\n", differ, n);
}

}  // namespace
