#pragma once
// Helpers shared by the CUDA tests.

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include <ddm/cuda.hpp>

/// Skip the current test, with the runtime's one-line reason, when no CUDA device is usable.
#define DDM_TEST_REQUIRE_GPU()                                                                    \
  do {                                                                                            \
    std::string ddm_test_why_;                                                                    \
    if (!::ddm::cuda::device_available(&ddm_test_why_)) {                                         \
      GTEST_SKIP() << "no GPU: " << ddm_test_why_;                                                \
    }                                                                                             \
  } while (0)

namespace ddm::test {

/// The values of a host batch in device memory, as a view of `pad` columns less than its
/// buffer's row stride when pad > 0. The padding holds NaN, so that a kernel that reads outside
/// the view (a wrong stride) produces NaN where the tests look.
template <class T>
struct device_copy {
  batch<T, cuda_space> storage;
  batch_view<T, cuda_space> view;
};

template <class T, class X>
[[nodiscard]] device_copy<T> on_device(const cuda_context& ctx, const X& host, index_t pad) {
  const auto h = cview(host);
  batch<T, cuda_space> storage(ctx, h.rows(), h.cols() + pad);
  ddm::fill(ctx, storage.view(), std::numeric_limits<T>::quiet_NaN());
  const batch_view<T, cuda_space> view(storage.data(), h.rows(), h.cols(), h.cols() + pad);
  ddm::copy(ctx, view, h);
  return {std::move(storage), view};
}

/// A host batch of normals (Philox, `seed`) times `scale`: the inputs the device-vs-host tests
/// compare on.
template <class T>
[[nodiscard]] batch<T> scaled_noise(index_t rows, index_t cols, std::uint64_t seed, double scale = 1.0) {
  batch<T> b(rows, cols);
  ddm::fill_normal(host_context{}, b.view(), seed);
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) b(r, c) = static_cast<T>(scale * static_cast<double>(b(r, c)));
  return b;
}

}  // namespace ddm::test
