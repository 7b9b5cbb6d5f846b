// Quantiles, binning and rank correlation on data whose answers are known by hand or by
// exhaustive enumeration.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <vector>

#include <ddm/diagnostics/statistics.hpp>

namespace {

namespace dd = ddm::diagnostics;

TEST(Quantile, Type7OnKnownData) {
  // {1, 2, 3, 4}: h = 3 p. Q(0.25) = 1 + 0.75 (2 - 1) = 1.75, Q(0.75) = 3 + 0.25 (4 - 3) = 3.25.
  const std::vector<double> v{4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(dd::quantile(v, 0.25), 1.75);
  EXPECT_DOUBLE_EQ(dd::quantile(v, 0.75), 3.25);
  EXPECT_DOUBLE_EQ(dd::median(v), 2.5);
  EXPECT_DOUBLE_EQ(dd::iqr(v), 1.5);
  EXPECT_DOUBLE_EQ(dd::quantile(v, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(dd::quantile(v, 1.0), 4.0);
  // {1, 3, 5, 7, 10} at p = 0.3: h = 1.2, Q = 3 + 0.2 (5 - 3) = 3.4 (R: quantile(c(7,1,3,10,5), 0.3)).
  const std::vector<double> w{7, 1, 3, 10, 5};
  EXPECT_DOUBLE_EQ(dd::quantile(w, 0.3), 3.4);
  const double ps[] = {0.3, 0.5};
  const auto q = dd::quantiles(w, ps);
  EXPECT_DOUBLE_EQ(q[0], 3.4);
  EXPECT_DOUBLE_EQ(q[1], 5.0);
  const std::vector<double> one{2.5};
  EXPECT_EQ(dd::quantile(one, 0.9), 2.5);
  EXPECT_EQ(dd::iqr(one), 0.0);
}

TEST(Quantile, BadInputIsAnError) {
  const std::vector<double> empty;
  const std::vector<double> v{1, std::numeric_limits<double>::quiet_NaN()};
  const std::vector<double> ok{1, 2};
  EXPECT_THROW((void)dd::quantile(empty, 0.5), ddm::empty_batch_error);
  try {
    (void)dd::quantile(v, 0.5);
    FAIL();
  } catch (const ddm::non_finite_error& e) {
    EXPECT_NE(std::string(e.what()).find("index 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)dd::quantile(ok, 1.5), ddm::argument_error);
}

TEST(BinByScore, QuartilesOfSortedRowsWithTheMeanQualityOfEach) {
  // Scores 1..8 in shuffled order, quality = 10 score: quartiles {1,2}, {3,4}, {5,6}, {7,8}
  // with mean quality 15, 35, 55, 75.
  const std::vector<double> score{5, 1, 8, 3, 2, 7, 4, 6};
  std::vector<double> quality;
  for (double s : score) quality.push_back(10 * s);
  const auto bins = dd::bin_by_score(score, quality);
  ASSERT_EQ(bins.size(), 4U);
  for (std::size_t b = 0; b < 4; ++b) {
    const auto lo = static_cast<double>(2 * b + 1);
    EXPECT_EQ(bins[b].count, 2U);
    EXPECT_EQ(bins[b].score_min, lo);
    EXPECT_EQ(bins[b].score_max, lo + 1);
    EXPECT_DOUBLE_EQ(bins[b].score_mean, lo + 0.5);
    EXPECT_DOUBLE_EQ(bins[b].quality_mean, 10 * lo + 5);
  }
  // 10 rows into 4 bins: positions [0, 2), [2, 5), [5, 7), [7, 10).
  std::vector<double> s10(10);
  std::iota(s10.begin(), s10.end(), 0.0);
  const auto b10 = dd::bin_by_score(s10, s10, 4);
  EXPECT_EQ(b10[0].count, 2U);
  EXPECT_EQ(b10[1].count, 3U);
  EXPECT_EQ(b10[2].count, 2U);
  EXPECT_EQ(b10[3].count, 3U);
  EXPECT_THROW((void)dd::bin_by_score(score, quality, 9), ddm::argument_error);
  EXPECT_THROW((void)dd::bin_by_score(score, std::vector<double>{1, 2}), ddm::shape_error);
}

TEST(Spearman, AverageRanksAndRhoWithTiesByHand) {
  const std::vector<double> tied{10, 20, 20, 30};
  EXPECT_EQ(dd::average_ranks(tied), (std::vector<double>{1, 2.5, 2.5, 4}));
  // x = 1..5, y = {5, 6, 7, 8, 7}: ranks y = {1, 2, 3.5, 5, 3.5}. Centered: dx = (-2,-1,0,1,2),
  // dy = (-2,-1,0.5,2,0.5); sum dx dy = 8, sum dx^2 = 10, sum dy^2 = 9.5: rho = 8 / sqrt(95).
  const std::vector<double> x{1, 2, 3, 4, 5};
  const std::vector<double> y{5, 6, 7, 8, 7};
  EXPECT_NEAR(dd::spearman(x, y), 8.0 / std::sqrt(95.0), 1e-15);
  // Any strictly increasing transform gives 1, a decreasing one -1.
  std::vector<double> cube, neg;
  for (double v : x) {
    cube.push_back(v * v * v);
    neg.push_back(-std::exp(v));
  }
  EXPECT_DOUBLE_EQ(dd::spearman(x, cube), 1.0);
  EXPECT_DOUBLE_EQ(dd::spearman(x, neg), -1.0);
  const std::vector<double> flat{3, 3, 3, 3, 3};
  try {
    (void)dd::spearman(x, flat);
    FAIL();
  } catch (const ddm::argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("all values of 'y' are equal"), std::string::npos) << e.what();
  }
}

TEST(Spearman, PermutationPValueAgreesWithExhaustiveEnumeration) {
  // n = 6: all 720 permutations of y give the exact two-sided p-value; the Monte Carlo estimate
  // (1 + c) / (1 + P) must be within 4 standard errors of it.
  const std::vector<double> x{0.3, 1.2, 2.2, 2.9, 4.4, 5.0};
  const std::vector<double> y{1.0, 0.4, 2.5, 1.9, 3.3, 2.0};
  const double rho = dd::spearman(x, y);
  std::vector<double> perm(y);
  std::sort(perm.begin(), perm.end());
  std::size_t extreme = 0, total = 0;
  do {
    ++total;
    if (std::abs(dd::spearman(x, perm)) >= std::abs(rho) * (1 - 1e-12)) ++extreme;
  } while (std::next_permutation(perm.begin(), perm.end()));
  const double exact = static_cast<double>(extreme) / static_cast<double>(total);
  const std::size_t p = 20000;
  const auto test = dd::spearman_test(x, y, {.permutations = p, .bootstrap = 0, .seed = 7});
  const double se = std::sqrt(exact * (1 - exact) / p);
  const double z = (*test.p_value - exact) / se;
  std::printf("[ measured ] rho = %.4f, permutation p = %.5f, exact p = %.5f (%zu / %zu), z = %+.2f\n", rho,
              *test.p_value, exact, extreme, total, z);
  EXPECT_EQ(test.rho, rho);
  EXPECT_LT(std::abs(z), 4.0);
  EXPECT_FALSE(test.ci_low.has_value());
}

TEST(Spearman, BootstrapIntervalIsDeterministicNestedAndCoversRho) {
  std::vector<double> x, y;
  for (std::uint64_t i = 0; i < 60; ++i) {
    x.push_back(ddm::philox4x32::normal(3, 0, i));
    y.push_back(x.back() + 0.8 * ddm::philox4x32::normal(3, 1, i));
  }
  const auto a = dd::spearman_test(x, y, {.permutations = 500, .bootstrap = 1000, .level = 0.95, .seed = 11});
  const auto b = dd::spearman_test(x, y, {.permutations = 500, .bootstrap = 1000, .level = 0.95, .seed = 11});
  const auto narrow = dd::spearman_test(x, y, {.permutations = 0, .bootstrap = 1000, .level = 0.5, .seed = 11});
  const auto other = dd::spearman_test(x, y, {.permutations = 500, .bootstrap = 1000, .level = 0.95, .seed = 12});
  std::printf("[ measured ] rho = %.4f, 95%% interval [%.4f, %.4f], 50%% interval [%.4f, %.4f], p = %.4f\n", a.rho,
              *a.ci_low, *a.ci_high, *narrow.ci_low, *narrow.ci_high, *a.p_value);
  EXPECT_EQ(*a.ci_low, *b.ci_low);
  EXPECT_EQ(*a.ci_high, *b.ci_high);
  EXPECT_EQ(*a.p_value, *b.p_value);
  EXPECT_NE(*a.ci_low, *other.ci_low);
  EXPECT_LT(*a.ci_low, a.rho);
  EXPECT_GT(*a.ci_high, a.rho);
  EXPECT_LE(*a.ci_low, *narrow.ci_low);
  EXPECT_GE(*a.ci_high, *narrow.ci_high);
  EXPECT_EQ(a.bootstrap_used + a.bootstrap_degenerate, 1000U);
  EXPECT_FALSE(narrow.p_value.has_value());
  // With rho this large among 60 pairs, no permutation of 500 reaches it: p = 1 / 501.
  EXPECT_DOUBLE_EQ(*a.p_value, 1.0 / 501.0);
}

}  // namespace
