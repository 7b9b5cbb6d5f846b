#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <ddm/core/algebra.hpp>
#include <ddm/core/rng.hpp>

namespace {

using ddm::batch;
using ddm::batch_view;
const ddm::host_context ctx{};

template <class T>
batch<T> noise(ddm::index_t rows, ddm::index_t cols, std::uint64_t seed) {
  batch<T> b(rows, cols);
  ddm::fill_normal(ctx, b.view(), seed);
  return b;
}

template <class T>
class AlgebraTest : public ::testing::Test {};
using ValueTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(AlgebraTest, ValueTypes);

TYPED_TEST(AlgebraTest, LincombMatchesElementwiseSumsForEveryArity) {
  using T = TypeParam;
  const auto a = noise<T>(3, 17, 1);
  const auto b = noise<T>(3, 17, 2);
  const auto c = noise<T>(3, 17, 3);
  const auto d = noise<T>(3, 17, 4);
  batch<T> out(3, 17);
  ddm::lincomb(ctx, out.view(), {0.5}, a);
  for (ddm::index_t r = 0; r < 3; ++r)
    for (ddm::index_t j = 0; j < 17; ++j) EXPECT_EQ(out(r, j), T(0.5) * a(r, j));
  ddm::lincomb(ctx, out.view(), {1.0, -2.0, 0.25, 3.0}, a, b, c, d);
  for (ddm::index_t r = 0; r < 3; ++r)
    for (ddm::index_t j = 0; j < 17; ++j) {
      const double expect = a(r, j) - 2.0 * b(r, j) + 0.25 * c(r, j) + 3.0 * d(r, j);
      EXPECT_NEAR(out(r, j), expect, 8 * std::numeric_limits<T>::epsilon() * (1 + std::abs(expect)));
    }
}

TYPED_TEST(AlgebraTest, LincombInPlaceAndOnStridedViews) {
  using T = TypeParam;
  auto x = noise<T>(4, 6, 5);
  const auto v = noise<T>(4, 6, 6);
  batch<T> expect(4, 6);
  for (ddm::index_t r = 0; r < 4; ++r)
    for (ddm::index_t j = 0; j < 6; ++j) expect(r, j) = x(r, j) + T(0.1) * v(r, j);
  ddm::lincomb(ctx, x.view(), {1.0, 0.1}, x, v);  // the Euler update, in place
  for (ddm::index_t r = 0; r < 4; ++r)
    for (ddm::index_t j = 0; j < 6; ++j) EXPECT_NEAR(x(r, j), expect(r, j), 4 * std::numeric_limits<T>::epsilon());

  // Left half of a (4, 12) buffer: a strided view.
  batch<T> wide(4, 12);
  const batch_view<T> left(wide.data(), 4, 6, 12);
  ddm::lincomb(ctx, left, {2.0}, v);
  for (ddm::index_t r = 0; r < 4; ++r)
    for (ddm::index_t j = 0; j < 12; ++j) EXPECT_EQ(wide(r, j), j < 6 ? T(2) * v(r, j) : T(0));
}

TEST(Algebra, LincombRejectsShapeMismatchAndPartialOverlap) {
  batch<float> a(3, 4);
  batch<float> b(3, 5);
  try {
    ddm::lincomb(ctx, a.view(), {1.0, 1.0}, a, b);
    FAIL();
  } catch (const ddm::shape_error& e) {
    EXPECT_STREQ(e.what(), "ddm::lincomb: operand 1 has shape (3, 5), expected the output's shape (3, 4)");
  }
  batch<float> buf(1, 10);
  const batch_view<float> first(buf.data(), 1, 8);
  const batch_view<float> shifted(buf.data() + 1, 1, 8);
  EXPECT_THROW(ddm::lincomb(ctx, first, {1.0}, shifted), ddm::argument_error);
}

TYPED_TEST(AlgebraTest, RowReductions) {
  using T = TypeParam;
  batch<T> a(2, 3);
  batch<T> b(2, 3);
  const T av[6] = {1, 2, 2, 0, 3, 4};
  const T bv[6] = {1, 1, 1, 2, 0, -1};
  for (int i = 0; i < 6; ++i) {
    a.data()[i] = av[i];
    b.data()[i] = bv[i];
  }
  batch<double> out(2, 1);
  ddm::row_dot(ctx, a, b, out.view());
  EXPECT_EQ(out(0, 0), 5.0);
  EXPECT_EQ(out(1, 0), -4.0);
  ddm::row_norm(ctx, a, out.view());
  EXPECT_EQ(out(0, 0), 3.0);
  EXPECT_EQ(out(1, 0), 5.0);
  batch<double> wrong(3, 1);
  EXPECT_THROW(ddm::row_norm(ctx, a, wrong.view()), ddm::shape_error);
}

TEST(Algebra, MaxScaledRmsIsTheWorstRow) {
  batch<double> err(2, 2);
  batch<double> x0(2, 2);
  batch<double> x1(2, 2);
  err(0, 0) = 1e-3;  // row 0: RMS of (1e-3/1e-3, 0) = sqrt(1/2)
  err(1, 0) = 2e-3;
  err(1, 1) = 2e-3;  // row 1: RMS of (2, 2) = 2
  EXPECT_DOUBLE_EQ(ddm::max_scaled_rms(ctx, err, x0, x1, 1e-3, 0.0), 2.0);
  x1(1, 0) = 1.0;    // relative part: scale 1e-3 + 1e-3 * 1 for element (1, 0)
  EXPECT_DOUBLE_EQ(ddm::max_scaled_rms(ctx, err, x0, x1, 1e-3, 1e-3), std::sqrt((1.0 + 4.0) / 2.0));
  EXPECT_THROW((void)ddm::max_scaled_rms(ctx, err, x0, x1, 0.0, 0.0), ddm::argument_error);
}

TEST(Algebra, AllFiniteFindsNaNAndInfinity) {
  batch<float> x(3, 5);
  EXPECT_TRUE(ddm::all_finite(ctx, x));
  x(2, 4) = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(ddm::all_finite(ctx, x));
  x(2, 4) = 0;
  x(0, 1) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(ddm::all_finite(ctx, x));
}

}  // namespace
