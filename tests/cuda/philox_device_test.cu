// The counter-based generator gives the same numbers on the device as on the host: the generator
// itself, and ddm::fill_normal / ddm::fill_uniform on device batches against the host's fills.
// Compiled whenever CUDA is on; skips with a reason when no GPU is present.

#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include <ddm/cuda.hpp>

#include "support/cuda_support.hpp"

namespace {

using ddm::batch;
using ddm::cuda_space;
using ddm::index_t;

__global__ void normals_kernel(double* out, unsigned long long n, unsigned long long seed, unsigned long long stream) {
  const unsigned long long i = blockIdx.x * static_cast<unsigned long long>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = ddm::philox4x32::normal(seed, stream, i);
}

TEST(PhiloxDevice, SameNormalsAsTheHost) {
  DDM_TEST_REQUIRE_GPU();
  constexpr unsigned long long n = 1 << 16;
  const ddm::cuda_context ctx;
  batch<double, cuda_space> d(ctx, 1, n);
  normals_kernel<<<(n + 255) / 256, 256>>>(d.data(), n, 1234, 5);
  ddm::cuda::check_launch("normals_kernel");
  const auto device = ddm::cuda::to_host(ctx, d);
  // The integer stream is identical; log/sqrt/sin/cos of CUDA's libm are within 2 ulp of the
  // host's, so compare in float (what batches of noise are stored in) to within one ulp.
  int differ = 0;
  for (unsigned long long i = 0; i < n; ++i) {
    const float h = static_cast<float>(ddm::philox4x32::normal(1234, 5, i));
    const float g = static_cast<float>(device(0, static_cast<index_t>(i)));
    if (h != g) {
      ++differ;
      EXPECT_NEAR(g, h, 2e-7F * (1 + std::abs(h))) << i;
    }
  }
  std::printf("[ measured ] %d of %llu float normals differ from the host's (by at most one ulp)\n", differ, n);
}

template <class T>
class PhiloxFill : public ::testing::Test {};
using ValueTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(PhiloxFill, ValueTypes);

// Element (r, c) is variate r * cols + c whatever the layout, so a strided device view and a
// contiguous host batch of the same shape hold the same noise.
TYPED_TEST(PhiloxFill, DeviceNormalsEqualTheHostsElementByElement) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  constexpr index_t rows = 64;
  constexpr index_t cols = 1001;
  batch<T> expect(rows, cols);
  ddm::fill_normal(ddm::host_context{}, expect.view(), 1234, 5);
  for (index_t pad : {0, 7}) {
    batch<T, cuda_space> buffer(ctx, rows, cols + pad);
    const ddm::batch_view<T, cuda_space> view(buffer.data(), rows, cols, cols + pad);
    ddm::fill_normal(ctx, view, 1234, 5);
    const auto got = ddm::cuda::to_host(ctx, view);
    // Float: the double values round to the same float or to adjacent floats. Double: CUDA's
    // log, sin and cos are within 2 ulp of the exact value and the host's within 1, so the
    // variates agree to a few ulp of the result (8 allowed).
    long differ = 0;
    double worst_ulps = 0;
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c) {
        const T h = expect(r, c);
        const T g = got(r, c);
        if (g == h) continue;
        ++differ;
        const double ulps =
            std::abs(static_cast<double>(g) - static_cast<double>(h)) / (std::numeric_limits<T>::epsilon() * std::abs(static_cast<double>(h)));
        worst_ulps = std::max(worst_ulps, ulps);
        if constexpr (sizeof(T) == 4) {
          ASSERT_TRUE(g == std::nextafter(h, std::numeric_limits<T>::infinity()) ||
                      g == std::nextafter(h, -std::numeric_limits<T>::infinity()))
              << "(" << r << ", " << c << "): device " << g << ", host " << h;
        } else {
          ASSERT_LE(ulps, 8.0) << "(" << r << ", " << c << "): device " << g << ", host " << h;
        }
      }
    std::printf("[ measured ] %s normals, pad %ld: %ld of %ld differ from the host's, by at most %.2f eps relative\n",
                sizeof(T) == 4 ? "float" : "double", static_cast<long>(pad), differ, static_cast<long>(rows * cols),
                worst_ulps);
  }
}

TYPED_TEST(PhiloxFill, DeviceUniformsEqualTheHostsBitForBit) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  constexpr index_t rows = 37;
  constexpr index_t cols = 999;
  batch<T> expect(rows, cols);
  ddm::fill_uniform(ddm::host_context{}, expect.view(), 99, 3);
  for (index_t pad : {0, 4}) {
    batch<T, cuda_space> buffer(ctx, rows, cols + pad);
    const ddm::batch_view<T, cuda_space> view(buffer.data(), rows, cols, cols + pad);
    ddm::fill_uniform(ctx, view, 99, 3);
    const auto got = ddm::cuda::to_host(ctx, view);
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c) ASSERT_EQ(got(r, c), expect(r, c)) << "(" << r << ", " << c << "), pad " << pad;
  }
}

}  // namespace
