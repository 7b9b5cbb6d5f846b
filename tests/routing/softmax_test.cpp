// The router softmax: agreement with the textbook formula, invariances, and errors that name the
// router, the row and the expert.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include <ddm/ddm.hpp>

namespace {

const ddm::host_context ctx{};

template <class T>
ddm::batch<T> random_logits(ddm::index_t rows, ddm::index_t cols, std::uint64_t seed, double scale) {
  ddm::batch<T> l(rows, cols);
  ddm::fill_normal(ctx, l.view(), seed);
  ddm::lincomb(ctx, l.view(), {scale}, l);
  return l;
}

TEST(Softmax, MatchesTheDirectFormulaAndSumsToOne) {
  const auto l = random_logits<double>(9, 8, 3, 2.0);
  ddm::batch<double> p(9, 8);
  ddm::softmax_rows(ctx, l.cview(), 1.0, p.view());
  for (ddm::index_t r = 0; r < 9; ++r) {
    double z = 0, s = 0;
    for (ddm::index_t k = 0; k < 8; ++k) z += std::exp(l(r, k));
    for (ddm::index_t k = 0; k < 8; ++k) {
      EXPECT_NEAR(p(r, k), std::exp(l(r, k)) / z, 1e-15);
      s += p(r, k);
    }
    EXPECT_NEAR(s, 1.0, 1e-15);
  }
}

TEST(Softmax, IsShiftInvariantAndStableForHugeLogits) {
  auto l = random_logits<double>(4, 5, 11, 1.0);
  ddm::batch<double> p(4, 5), q(4, 5);
  ddm::softmax_rows(ctx, l.cview(), 1.0, p.view());
  ddm::batch<double> shifted(4, 5);
  ddm::fill(ctx, shifted.view(), 1e300);
  ddm::lincomb(ctx, shifted.view(), {1.0, 1.0}, shifted, l);  // 1e300 + l: exp would overflow
  ddm::softmax_rows(ctx, shifted.cview(), 1.0, q.view());
  double worst = 0;
  for (ddm::index_t r = 0; r < 4; ++r)
    for (ddm::index_t k = 0; k < 5; ++k) EXPECT_TRUE(std::isfinite(q(r, k)));
  // 1e300 + l rounds l away (ulp(1e300) is huge): every row becomes uniform, exactly.
  for (ddm::index_t r = 0; r < 4; ++r)
    for (ddm::index_t k = 0; k < 5; ++k) worst = std::max(worst, std::abs(q(r, k) - 0.2));
  EXPECT_LT(worst, 1e-15);
  // A shift by 700 (exp(700 + l) alone would overflow float and come close in double) keeps the result.
  ddm::batch<double> l700(4, 5);
  ddm::fill(ctx, l700.view(), 700.0);
  ddm::lincomb(ctx, l700.view(), {1.0, 1.0}, l700, l);
  ddm::softmax_rows(ctx, l700.cview(), 1.0, q.view());
  for (ddm::index_t r = 0; r < 4; ++r)
    for (ddm::index_t k = 0; k < 5; ++k) EXPECT_NEAR(q(r, k), p(r, k), 1e-13);
}

TEST(Softmax, TemperatureDividesTheLogits) {
  const auto l = random_logits<double>(6, 7, 5, 3.0);
  ddm::batch<double> scaled(6, 7), p(6, 7), q(6, 7);
  ddm::lincomb(ctx, scaled.view(), {1.0 / 2.5}, l);
  ddm::softmax_rows(ctx, l.cview(), 2.5, p.view());
  ddm::softmax_rows(ctx, scaled.cview(), 1.0, q.view());
  for (ddm::index_t r = 0; r < 6; ++r)
    for (ddm::index_t k = 0; k < 7; ++k) EXPECT_NEAR(p(r, k), q(r, k), 1e-15);
}

TEST(Softmax, WorksInPlaceAndInFloat) {
  auto l = random_logits<float>(5, 8, 7, 2.0);
  ddm::batch<float> p(5, 8);
  ddm::softmax_rows(ctx, l.cview(), 1.0, p.view());
  ddm::softmax_rows(ctx, l.cview(), 1.0, l.view());  // in place
  for (ddm::index_t r = 0; r < 5; ++r)
    for (ddm::index_t k = 0; k < 8; ++k) EXPECT_EQ(l(r, k), p(r, k));
}

TEST(Softmax, NonFiniteLogitNamesRouterRowAndExpert) {
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity()}) {
    auto l = random_logits<double>(4, 6, 1, 1.0);
    l(2, 3) = bad;
    ddm::batch<double> p(4, 6);
    try {
      ddm::softmax_rows(ctx, l.cview(), 1.0, p.view(), "my_router", 0.25);
      FAIL() << "expected ddm::non_finite_error for logit " << bad;
    } catch (const ddm::non_finite_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("my_router"), std::string::npos) << what;
      EXPECT_NE(what.find("row 2"), std::string::npos) << what;
      EXPECT_NE(what.find("expert 3"), std::string::npos) << what;
      EXPECT_EQ(e.time(), 0.25);
    }
  }
}

TEST(Softmax, RejectsBadTemperatureAndShapes) {
  const auto l = random_logits<double>(2, 3, 1, 1.0);
  ddm::batch<double> p(2, 3), wrong(2, 4);
  EXPECT_THROW(ddm::softmax_rows(ctx, l.cview(), 0.0, p.view()), ddm::argument_error);
  EXPECT_THROW(ddm::softmax_rows(ctx, l.cview(), -1.0, p.view()), ddm::argument_error);
  EXPECT_THROW(ddm::softmax_rows(ctx, l.cview(), std::numeric_limits<double>::infinity(), p.view()), ddm::argument_error);
  EXPECT_THROW(ddm::softmax_rows(ctx, l.cview(), 1.0, wrong.view()), ddm::shape_error);
}

}  // namespace
