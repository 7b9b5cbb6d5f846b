// The state algebra on device views agrees with the host algebra, element by element within
// bounds derived from the roundings each side makes; transfers are exact; reductions are
// deterministic; failing CUDA calls raise ddm::device_error naming the call.
//
// GPU tests skip with the runtime's reason when no device is usable. The error tests also run
// without a GPU: the runtime then fails for want of a driver, and the error must still name the
// call.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <ddm/cuda.hpp>

#include "support/cuda_support.hpp"

namespace {

using ddm::batch;
using ddm::batch_view;
using ddm::cuda_space;
using ddm::index_t;
using ddm::test::on_device;

const ddm::host_context host{};

template <class T>
batch<T> host_noise(index_t rows, index_t cols, std::uint64_t seed) {
  batch<T> b(rows, cols);
  ddm::fill_normal(host, b.view(), seed);
  return b;
}

template <class T>
class DeviceAlgebra : public ::testing::Test {};
using ValueTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(DeviceAlgebra, ValueTypes);

// ---------------------------------------------------------------------------------------------
// Memory and transfers

TEST(DeviceMemory, NewBatchesAreZeroAndRoundTripsAreExact) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  const batch<float, cuda_space> zeros(ctx, 3, 1000);
  const auto back = ddm::cuda::to_host(ctx, zeros);
  for (index_t r = 0; r < 3; ++r)
    for (index_t c = 0; c < 1000; ++c) ASSERT_EQ(back(r, c), 0.0F) << r << ", " << c;

  const auto h = host_noise<float>(5, 33, 1);
  for (index_t pad : {0, 7}) {
    const auto d = on_device<float>(ctx, h, pad);  // host -> strided device view
    const auto round = ddm::cuda::to_host(ctx, d.view);
    // device -> strided host view: the host padding is left alone.
    batch<float> wide(5, 40);
    ddm::fill(host, wide.view(), -1.0F);
    const batch_view<float> left(wide.data(), 5, 33, 40);
    ddm::copy(ctx, left, d.view);
    for (index_t r = 0; r < 5; ++r) {
      for (index_t c = 0; c < 33; ++c) {
        ASSERT_EQ(round(r, c), h(r, c)) << "pad " << pad << " at " << r << ", " << c;
        ASSERT_EQ(wide(r, c), h(r, c)) << "pad " << pad << " at " << r << ", " << c;
      }
      for (index_t c = 33; c < 40; ++c) ASSERT_EQ(wide(r, c), -1.0F);
    }
  }
  // A strided host view goes to a contiguous device batch.
  const batch_view<const float> host_left(h.data(), 5, 20, 33);
  const auto d = ddm::cuda::to_device(ctx, host_left);
  const auto back2 = ddm::cuda::to_host(ctx, d);
  for (index_t r = 0; r < 5; ++r)
    for (index_t c = 0; c < 20; ++c) ASSERT_EQ(back2(r, c), h(r, c));
}

TEST(DeviceMemory, TransfersRejectMismatchedShapes) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  batch<float, cuda_space> d(ctx, 3, 2);
  batch<float> h(2, 3);
  EXPECT_THROW(ddm::copy(ctx, h.view(), d), ddm::shape_error);
  EXPECT_THROW(ddm::copy(ctx, d.view(), h), ddm::shape_error);
}

// ---------------------------------------------------------------------------------------------
// Errors: these run with or without a GPU.

TEST(DeviceErrors, AnImpossibleAllocationRaisesDeviceErrorNamingTheCall) {
  const ddm::cuda_context ctx;
  constexpr index_t side = index_t{1} << 24;  // 2^48 floats: 1 PiB
  try {
    const batch<float, cuda_space> huge(ctx, side, side);
    FAIL() << "allocating 1 PiB of device memory succeeded";
  } catch (const ddm::device_error& e) {
    const std::string what = e.what();
    std::printf("[ measured ] %s\n", what.c_str());
    EXPECT_NE(what.find("ddm::cuda: cudaMallocAsync(1125899906842624 bytes) failed: "), std::string::npos) << what;
    if (ddm::cuda::device_available()) EXPECT_NE(what.find("out of memory"), std::string::npos) << what;
  }
  // On a GPU the failure is not left behind for the next launch check to report. (Without a
  // driver every call, cudaGetLastError included, reports the missing driver.)
  if (ddm::cuda::device_available()) EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(DeviceErrors, CheckedCallsNameTheCallAsWrittenAndAreDdmErrors) {
  try {
    DDM_CUDA_CHECK(cudaSetDevice(1 << 20));
    FAIL() << "cudaSetDevice(1 << 20) succeeded";
  } catch (const ddm::error& e) {
    EXPECT_NE(dynamic_cast<const ddm::device_error*>(&e), nullptr);
    const std::string what = e.message();
    EXPECT_NE(what.find("ddm::cuda: cudaSetDevice(1 << 20) failed: "), std::string::npos) << what;
  }
}

// ---------------------------------------------------------------------------------------------
// lincomb and fill

// Device and host each compute sum_i c_i x_i with at most 2N roundings of size
// eps/2 * sum_i |c_i x_i| (N products, N - 1 sums; fewer where the device fuses them), so the two
// results differ by at most 2 N eps sum_i |c_i x_i|.
template <class T, bool InPlace = false, std::size_t N>
void expect_lincomb_agrees(const double (&coeffs)[N], index_t rows, index_t cols, index_t pad_in, index_t pad_out) {
  const ddm::cuda_context ctx;
  std::vector<batch<T>> xs;
  for (std::size_t i = 0; i < N; ++i) xs.push_back(host_noise<T>(rows, cols, 100 + i));
  std::vector<ddm::test::device_copy<T>> ds;
  for (std::size_t i = 0; i < N; ++i) ds.push_back(on_device<T>(ctx, xs[i], pad_in));
  auto out = on_device<T>(ctx, batch<T>(rows, cols), pad_out);

  batch<T> expect(rows, cols);
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    if constexpr (InPlace) {
      // out = c_0 out + sum_{i>0} c_i x_i, with out starting as x_0.
      ddm::copy(host, expect.view(), xs[0]);
      ddm::copy(ctx, out.view, ds[0].view);
      ddm::lincomb(host, expect.view(), coeffs, expect, xs[I + 1]...);
      ddm::lincomb(ctx, out.view, coeffs, out.view, ds[I + 1].view...);
    } else {
      ddm::lincomb(host, expect.view(), coeffs, xs[I]...);
      ddm::lincomb(ctx, out.view, coeffs, ds[I].view...);
    }
  }(std::make_index_sequence<InPlace ? N - 1 : N>{});
  const auto got = ddm::cuda::to_host(ctx, out.view);

  double worst = 0;  // in units of eps * sum_i |c_i x_i|
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) {
      double scale = 0;
      for (std::size_t i = 0; i < N; ++i)
        scale += std::abs(static_cast<double>(static_cast<T>(coeffs[i])) * static_cast<double>(xs[i](r, c)));
      const double diff = std::abs(static_cast<double>(got(r, c)) - static_cast<double>(expect(r, c)));
      const double units = diff / (std::numeric_limits<T>::epsilon() * scale);
      worst = std::max(worst, units);
      ASSERT_LE(units, 2.0 * N) << "N = " << N << " at (" << r << ", " << c << "): device " << got(r, c) << ", host "
                                << expect(r, c);
    }
  std::printf("[ measured ] lincomb N = %zu (%ld x %ld, pads %ld/%ld%s): max |device - host| = %.2f eps sum|c x|\n", N,
              static_cast<long>(rows), static_cast<long>(cols), static_cast<long>(pad_in), static_cast<long>(pad_out),
              InPlace ? ", in place" : "", worst);
}

TYPED_TEST(DeviceAlgebra, LincombAgreesWithTheHostForEveryArityAndLayout) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  // Contiguous (one flat pass), strided operands, strided output, both.
  for (auto [pad_in, pad_out] : {std::pair<index_t, index_t>{0, 0}, {5, 0}, {0, 3}, {5, 3}}) {
    expect_lincomb_agrees<T>({0.5}, 7, 300, pad_in, pad_out);
    expect_lincomb_agrees<T>({1.0, -0.37}, 7, 300, pad_in, pad_out);
    expect_lincomb_agrees<T>({0.25, 1.5, -2.0}, 7, 300, pad_in, pad_out);
    expect_lincomb_agrees<T>({1.0, -2.0, 0.25, 3.0}, 7, 300, pad_in, pad_out);
    // Dormand-Prince's combination has eight operands.
    expect_lincomb_agrees<T>({1.0, 0.1, 0.0, 0.45, 0.65, -0.3, 0.13, 0.02}, 7, 300, pad_in, pad_out);
  }
  // In place (the integrators' updates), over more rows than one grid column of blocks covers.
  expect_lincomb_agrees<T, true>({1.0, -0.01}, 70000, 3, 0, 0);
  expect_lincomb_agrees<T, true>({0.9, 0.1, -0.05}, 70000, 3, 2, 2);
  expect_lincomb_agrees<T, true>({1.0, 0.5, 0.25, 0.125}, 64, 4099, 0, 0);
}

// The streaming kernels take 16-byte accesses where every operand sits at the same offset from a
// 16-byte boundary (in every row), with the values before that boundary and after the last full
// access done one at a time; operands at different offsets go one value at a time. Each case
// below is checked element by element against the host, and the values around each view must
// stay untouched.
TYPED_TEST(DeviceAlgebra, LincombIsExactOnEveryAlignmentOfHeadsTailsAndStrides) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  constexpr index_t rows = 5;
  constexpr index_t cols = 45;  // not a multiple of any vector width
  const auto a = host_noise<T>(rows, cols, 21);
  const auto b = host_noise<T>(rows, cols, 22);
  constexpr T sentinel = T(-777);
  struct placed {
    batch<T, cuda_space> buffer;
    batch_view<T, cuda_space> view;
  };
  // The values of `h` at element `offset` of a fresh buffer, rows `stride` apart, the rest sentinel.
  auto place = [&](const batch<T>& h, index_t offset, index_t stride) {
    batch<T, cuda_space> buffer(ctx, 1, offset + rows * stride + 8);
    ddm::fill(ctx, buffer.view(), sentinel);
    const batch_view<T, cuda_space> view(buffer.data() + offset, rows, cols, stride);
    ddm::copy(ctx, view, h);
    return placed{std::move(buffer), view};
  };
  int cases = 0;
  // Strides: contiguous (one flat pass), a multiple of 16 bytes (rows share the alignment), and
  // not (one value at a time).
  for (index_t stride : {cols, index_t{48}, index_t{47}}) {
    for (index_t off_out = 0; off_out < 4; ++off_out) {
      for (index_t off_a : {off_out, (off_out + 1) % 4}) {
        const auto pa = place(a, off_a, stride);
        const auto pb = place(b, off_out, stride);
        auto po = place(batch<T>(rows, cols), off_out, stride);
        ddm::lincomb(ctx, po.view, {0.75, -1.25}, pa.view, pb.view);
        // In place too: b = 2 b - a.
        ddm::lincomb(ctx, pb.view, {2.0, -1.0}, pb.view, pa.view);
        const auto whole = ddm::cuda::to_host(ctx, po.buffer);
        const auto whole_b = ddm::cuda::to_host(ctx, pb.buffer);
        for (index_t i = 0; i < whole.cols(); ++i) {
          const index_t rel = i - off_out;
          const bool inside = rel >= 0 && rel / stride < rows && rel % stride < cols;
          if (!inside) {
            ASSERT_EQ(whole(0, i), sentinel) << "stride " << stride << ", offsets " << off_out << "/" << off_a
                                             << ": element " << i << " outside the view was written";
            ASSERT_EQ(whole_b(0, i), sentinel) << "in place, element " << i << " outside the view was written";
            continue;
          }
          const index_t r = rel / stride;
          const index_t c = rel % stride;
          const double av = static_cast<double>(a(r, c));
          const double bv = static_cast<double>(b(r, c));
          const double eps = std::numeric_limits<T>::epsilon();
          ASSERT_NEAR(static_cast<double>(whole(0, i)), 0.75 * av - 1.25 * bv, 4 * eps * (0.75 * std::abs(av) + 1.25 * std::abs(bv)))
              << "stride " << stride << ", offsets " << off_out << "/" << off_a << " at (" << r << ", " << c << ")";
          ASSERT_NEAR(static_cast<double>(whole_b(0, i)), 2 * bv - av, 4 * eps * (2 * std::abs(bv) + std::abs(av)))
              << "in place, stride " << stride << ", offset " << off_out << " at (" << r << ", " << c << ")";
        }
        ++cases;
      }
    }
  }
  // Fill on the same alignments.
  for (index_t stride : {cols, index_t{48}, index_t{47}})
    for (index_t off = 0; off < 4; ++off) {
      auto po = place(batch<T>(rows, cols), off, stride);
      ddm::fill(ctx, po.view, T(3));
      const auto whole = ddm::cuda::to_host(ctx, po.buffer);
      for (index_t i = 0; i < whole.cols(); ++i) {
        const index_t rel = i - off;
        const bool inside = rel >= 0 && rel / stride < rows && rel % stride < cols;
        ASSERT_EQ(whole(0, i), inside ? T(3) : sentinel) << "fill, stride " << stride << ", offset " << off << ", element " << i;
      }
    }
  std::printf("[ measured ] lincomb and fill correct (within 4 eps) and in bounds on %d alignment cases (heads 0-3, tails, 3 strides)\n", cases);
}

TYPED_TEST(DeviceAlgebra, FillWritesTheViewAndNothingElse) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  batch<T, cuda_space> buffer(ctx, 9, 130);
  ddm::fill(ctx, buffer.view(), T(-1));
  const batch_view<T, cuda_space> inner(buffer.data() + 2, 9, 100, 130);
  ddm::fill(ctx, inner, T(2.5));
  const auto h = ddm::cuda::to_host(ctx, buffer);
  for (index_t r = 0; r < 9; ++r)
    for (index_t c = 0; c < 130; ++c) ASSERT_EQ(h(r, c), (c >= 2 && c < 102) ? T(2.5) : T(-1)) << r << ", " << c;
}

// ---------------------------------------------------------------------------------------------
// Row reductions

// Both sides accumulate in double; only the order of the sums differs, so the double results
// differ by at most 2 cols eps_double sum_j |a_j b_j|, and the conversion to R adds one rounding
// of each: eps_R |result|.
template <class T, class R>
void expect_row_reductions_agree(index_t rows, index_t cols, index_t pad) {
  const ddm::cuda_context ctx;
  const auto a = host_noise<T>(rows, cols, 7);
  const auto b = host_noise<T>(rows, cols, 8);
  const auto da = on_device<T>(ctx, a, pad);
  const auto db = on_device<T>(ctx, b, pad);
  // Outputs as the middle column of a (rows, 3) buffer: a strided (rows, 1) view.
  batch<R, cuda_space> out_buffer(ctx, rows, 3);
  const batch_view<R, cuda_space> dot_out(out_buffer.data() + 1, rows, 1, 3);
  batch<R> dot_expect(rows, 1);
  batch<R> norm_expect(rows, 1);
  ddm::row_dot(host, a, b, dot_expect.view());
  ddm::row_norm(host, a, norm_expect.view());

  ddm::row_dot(ctx, da.view, db.view, dot_out);
  const auto dot = ddm::cuda::to_host(ctx, dot_out);
  ddm::row_norm(ctx, da.view, dot_out);
  const auto norm = ddm::cuda::to_host(ctx, dot_out);

  constexpr double eps_d = std::numeric_limits<double>::epsilon();
  constexpr double eps_r = std::numeric_limits<R>::epsilon();
  double worst_dot = 0;
  double worst_norm = 0;
  for (index_t r = 0; r < rows; ++r) {
    double abs_sum = 0;
    double sq_sum = 0;
    for (index_t c = 0; c < cols; ++c) {
      abs_sum += std::abs(static_cast<double>(a(r, c)) * static_cast<double>(b(r, c)));
      sq_sum += static_cast<double>(a(r, c)) * static_cast<double>(a(r, c));
    }
    const double n = static_cast<double>(cols);
    const double h_dot = static_cast<double>(dot_expect(r, 0));
    const double h_norm = static_cast<double>(norm_expect(r, 0));
    const double tol_dot = 2 * n * eps_d * abs_sum + eps_r * std::abs(h_dot);
    const double tol_norm = n * eps_d * std::sqrt(sq_sum) + eps_r * h_norm;
    const double d_dot = std::abs(static_cast<double>(dot(r, 0)) - h_dot);
    const double d_norm = std::abs(static_cast<double>(norm(r, 0)) - h_norm);
    ASSERT_LE(d_dot, tol_dot) << "row_dot of row " << r << " (" << rows << " x " << cols << ")";
    ASSERT_LE(d_norm, tol_norm) << "row_norm of row " << r << " (" << rows << " x " << cols << ")";
    worst_dot = std::max(worst_dot, d_dot / tol_dot);
    worst_norm = std::max(worst_norm, d_norm / tol_norm);
  }
  std::printf("[ measured ] row_dot/row_norm %ld x %ld (pad %ld, out %s): worst |device - host| = %.3f / %.3f of the bound\n",
              static_cast<long>(rows), static_cast<long>(cols), static_cast<long>(pad), sizeof(R) == 4 ? "float" : "double",
              worst_dot, worst_norm);
}

TYPED_TEST(DeviceAlgebra, RowDotAndRowNormAgreeWithTheHost) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  expect_row_reductions_agree<T, T>(1, 1, 0);
  expect_row_reductions_agree<T, T>(3, 17, 4);
  expect_row_reductions_agree<T, T>(300, 257, 0);
  expect_row_reductions_agree<T, double>(300, 257, 3);
  expect_row_reductions_agree<T, float>(2, 70000, 1);
}

TEST(DeviceReductions, AreDeterministicAcrossRunsAndStreams) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda::stream side;
  const ddm::cuda_context ctx;
  const ddm::cuda_context other = side.context();
  const auto a = host_noise<float>(64, 40000, 9);
  const auto b = host_noise<float>(64, 40000, 10);
  const auto da = ddm::cuda::to_device(ctx, a);
  const auto db = ddm::cuda::to_device(ctx, b);
  batch<double, cuda_space> out(ctx, 64, 1);
  ddm::row_dot(ctx, da, db, out.view());
  const auto first = ddm::cuda::to_host(ctx, out);
  const double first_rms = ddm::max_scaled_rms(ctx, da, db, da, 1e-3, 1e-2);
  for (int run = 0; run < 3; ++run) {
    const ddm::cuda_context& c = run % 2 == 0 ? other : ctx;
    ddm::fill(c, out.view(), 0.0);
    ddm::row_dot(c, da, db, out.view());
    const auto again = ddm::cuda::to_host(c, out);
    for (index_t r = 0; r < 64; ++r) ASSERT_EQ(again(r, 0), first(r, 0)) << "run " << run << ", row " << r;
    ASSERT_EQ(ddm::max_scaled_rms(c, da, db, da, 1e-3, 1e-2), first_rms) << "run " << run;
  }
}

// The row sums are sums of non-negative terms in double: any two orders agree to within
// cols eps_double relative, and the square root halves that.
TYPED_TEST(DeviceAlgebra, MaxScaledRmsAgreesWithTheHostAndFindsTheWorstRow) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  constexpr index_t rows = 50;
  constexpr index_t cols = 1000;
  auto err = host_noise<T>(rows, cols, 11);
  const auto x0 = host_noise<T>(rows, cols, 12);
  const auto x1 = host_noise<T>(rows, cols, 13);
  for (index_t c = 0; c < cols; ++c) err(41, c) *= T(30);  // row 41 dominates
  const auto d0 = on_device<T>(ctx, x0, 3);
  const auto d1 = on_device<T>(ctx, x1, 0);
  auto de = on_device<T>(ctx, err, 1);

  const double expect = ddm::max_scaled_rms(host, err, x0, x1, 1e-3, 1e-2);
  const double got = ddm::max_scaled_rms(ctx, de.view, d0.view, d1.view, 1e-3, 1e-2);
  const double row41 = ddm::max_scaled_rms(host, batch_view<const T>(err.data() + 41 * cols, 1, cols),
                                           batch_view<const T>(x0.data() + 41 * cols, 1, cols),
                                           batch_view<const T>(x1.data() + 41 * cols, 1, cols), 1e-3, 1e-2);
  std::printf("[ measured ] max_scaled_rms: device %.17g, host %.17g, relative difference %.2e\n", got, expect,
              std::abs(got - expect) / expect);
  EXPECT_LE(std::abs(got - expect), static_cast<double>(cols) * std::numeric_limits<double>::epsilon() * expect);
  EXPECT_EQ(expect, row41);

  // NaN and infinity anywhere propagate, as on the host.
  ddm::fill(ctx, de.view.subrows(17, 1), std::numeric_limits<T>::infinity());
  EXPECT_EQ(ddm::max_scaled_rms(ctx, de.view, d0.view, d1.view, 1e-3, 1e-2), std::numeric_limits<double>::infinity());
  ddm::fill(ctx, de.view.subrows(49, 1), std::numeric_limits<T>::quiet_NaN());
  EXPECT_TRUE(std::isnan(ddm::max_scaled_rms(ctx, de.view, d0.view, d1.view, 1e-3, 1e-2)));
}

TYPED_TEST(DeviceAlgebra, AllFiniteFindsEveryNonFiniteValueInTheViewAndIgnoresPadding) {
  DDM_TEST_REQUIRE_GPU();
  using T = TypeParam;
  const ddm::cuda_context ctx;
  const auto h = host_noise<T>(33, 501, 14);
  for (index_t pad : {0, 9}) {
    const auto clean = on_device<T>(ctx, h, pad);  // the padding is NaN
    EXPECT_TRUE(ddm::all_finite(ctx, clean.view)) << "pad " << pad;
    for (auto [r, c] : {std::pair<index_t, index_t>{0, 0}, {32, 500}, {16, 250}, {5, 499}}) {
      for (const T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                          -std::numeric_limits<T>::infinity()}) {
        auto d = on_device<T>(ctx, h, pad);
        ddm::fill(ctx, batch_view<T, cuda_space>(d.view.row(r) + c, 1, 1), bad);
        EXPECT_FALSE(ddm::all_finite(ctx, d.view)) << bad << " at (" << r << ", " << c << "), pad " << pad;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Streams

// A chain of dependent operations on a user stream (non-blocking: nothing orders it with the
// default stream but the stream itself) computes what the default stream computes, bit for bit.
TEST(DeviceStreams, WorkOnAUserStreamMatchesTheDefaultStreamBitForBit) {
  DDM_TEST_REQUIRE_GPU();
  auto chain = [](const ddm::cuda_context& ctx) {
    batch<float, cuda_space> x(ctx, 128, 3000);
    batch<float, cuda_space> y(ctx, 128, 3000);
    batch<double, cuda_space> n(ctx, 128, 1);
    ddm::fill_normal(ctx, x.view(), 21);
    ddm::fill_uniform(ctx, y.view(), 22);
    for (int i = 0; i < 20; ++i) ddm::lincomb(ctx, x.view(), {0.99, 0.05}, x, y);
    ddm::row_norm(ctx, x, n.view());
    return std::pair{ddm::cuda::to_host(ctx, x), ddm::cuda::to_host(ctx, n)};
  };
  const ddm::cuda::stream s;
  const auto [xs, ns] = chain(s.context());
  const auto [xd, nd] = chain(ddm::cuda_context{});
  for (index_t r = 0; r < 128; ++r) {
    ASSERT_EQ(ns(r, 0), nd(r, 0)) << r;
    for (index_t c = 0; c < 3000; ++c) ASSERT_EQ(xs(r, c), xd(r, c)) << r << ", " << c;
  }
}

}  // namespace
