// The analytic quality measures that need no linear algebra: NLL against a direct computation,
// the chi-square quantile behind the precision radius, precision and mode coverage.

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <ddm/ddm.hpp>

namespace {

using ddm::synthetic::analytic_ddm;
const ddm::host_context ctx{};

TEST(Measures, NllMatchesADirectComputation) {
  // Two dimensions, three components: log p(x) = log sum_j w_j N(x; mu_j, s_j^2 I) computed
  // naively in long double.
  const ddm::synthetic::mixture_spec spec{2, {0.0, 0.0, 1.5, -0.5, -2.0, 1.0}, {0.5, 0.3, 0.8}, {0.2, 0.5, 0.3}, {0, 0, 1}};
  const analytic_ddm m(spec);
  ddm::batch<double> x(50, 2);
  ddm::fill_normal(ctx, x.view(), 3);
  ddm::lincomb(ctx, x.view(), {1.5}, x);
  long double total = 0;
  for (ddm::index_t r = 0; r < 50; ++r) {
    long double p = 0;
    for (int j = 0; j < 3; ++j) {
      const long double s = spec.scales[static_cast<std::size_t>(j)];
      const long double d0 = x(r, 0) - spec.means[static_cast<std::size_t>(2 * j)];
      const long double d1 = x(r, 1) - spec.means[static_cast<std::size_t>(2 * j + 1)];
      p += spec.weights[static_cast<std::size_t>(j)] * std::exp(-(d0 * d0 + d1 * d1) / (2 * s * s)) /
           (2 * 3.14159265358979323846264338327950288L * s * s);
    }
    total -= std::log(p);
    const double one = m.log_density(std::span<const double>(x.cview().row(r), 2));
    EXPECT_NEAR(one, static_cast<double>(std::log(p)), 1e-12);
  }
  const double expected = static_cast<double>(total / 50);
  const double nll = ddm::synthetic::mean_nll(m, x);
  EXPECT_NEAR(nll, expected, 1e-12 * std::abs(expected));
  std::printf("[ measured ] mean NLL %.15f, direct %.15f\n", nll, expected);
}

TEST(Measures, NllIsStableFarFromEveryComponent) {
  // At distance 1e3 every density underflows; log-sum-exp keeps the exact answer: the nearest
  // component dominates, log p = log w + log N.
  const ddm::synthetic::mixture_spec spec{1, {0.0, 10.0}, {1.0, 1.0}, {0.5, 0.5}, {0, 1}};
  const analytic_ddm m(spec);
  ddm::batch<double> x(1, 1);
  x(0, 0) = 1000.0;
  const double expected = -(std::log(0.5) - 990.0 * 990.0 / 2 - 0.5 * std::log(2 * 3.14159265358979323846));
  EXPECT_NEAR(ddm::synthetic::mean_nll(m, x), expected, 1e-9 * expected);
}

TEST(Measures, ChiSquaredAgainstClosedForms) {
  // dof 2: cdf = 1 - exp(-x / 2); dof 1: cdf = erf(sqrt(x / 2)).
  for (double q : {0.01, 0.5, 0.9, 0.99, 0.999999})
    EXPECT_NEAR(ddm::synthetic::chi_squared_quantile(2, q), -2 * std::log1p(-q), 1e-10 * (1 - 2 * std::log1p(-q)));
  for (double x : {0.01, 0.5, 1.0, 3.84, 10.0, 40.0})
    EXPECT_NEAR(ddm::synthetic::chi_squared_cdf(1, x), std::erf(std::sqrt(x / 2)), 1e-14) << x;
  // The mean of chi^2_D is D: the cdf at a large quantile of many dof is where it should be.
  for (double dof : {1.0, 4.0, 8.0, 64.0}) {
    const double r2 = ddm::synthetic::chi_squared_quantile(dof, 0.99);
    EXPECT_NEAR(ddm::synthetic::chi_squared_cdf(dof, r2), 0.99, 1e-12) << dof;
    EXPECT_GT(r2, dof);
  }
  EXPECT_THROW((void)ddm::synthetic::chi_squared_quantile(8, 1.0), ddm::argument_error);
}

TEST(Measures, TrueDataIsPreciseAndCoversEveryMode) {
  const analytic_ddm m;
  const ddm::index_t n = 20000;
  const auto x = m.sample_data(n, 5);
  const auto rep = ddm::synthetic::mode_statistics(m, x);
  // Each true sample lies within the 0.99 radius of its own component with probability 0.99.
  EXPECT_GE(rep.precision, 0.99 - 4 * std::sqrt(0.99 * 0.01 / static_cast<double>(n)));
  EXPECT_EQ(rep.coverage, 1.0);
  EXPECT_EQ(rep.cluster_coverage, 1.0);
  EXPECT_LT(rep.cluster_tv_distance, 0.02);
  std::printf("[ measured ] true data: precision %.4f, coverage %.3f, cluster TV %.4f, radius %.3f\n", rep.precision,
              rep.coverage, rep.cluster_tv_distance, rep.radius);
}

TEST(Measures, OneClusterCoversOnlyItsModesAndNoiseIsImprecise) {
  const analytic_ddm m;
  const auto s = m.sample_data_labeled(4000, 9);
  std::vector<ddm::index_t> rows;
  for (std::size_t i = 0; i < s.cluster.size(); ++i)
    if (s.cluster[i] == 2) rows.push_back(static_cast<ddm::index_t>(i));
  ddm::batch<double> only(static_cast<ddm::index_t>(rows.size()), m.dim());
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (ddm::index_t c = 0; c < m.dim(); ++c) only(static_cast<ddm::index_t>(i), c) = s.x(rows[i], c);
  const auto rep = ddm::synthetic::mode_statistics(m, only);
  const int own = m.cluster_begin()[3] - m.cluster_begin()[2];
  EXPECT_EQ(rep.coverage, static_cast<double>(own) / static_cast<double>(m.num_components()));
  EXPECT_EQ(rep.cluster_coverage, 1.0 / 8.0);
  EXPECT_NEAR(rep.cluster_tv_distance, 1.0 - m.cluster_priors()[2], 1e-12);
  // Points far from all data are within no component's radius.
  ddm::batch<double> far(100, m.dim());
  ddm::fill_normal(ctx, far.view(), 4);
  ddm::lincomb(ctx, far.view(), {50.0}, far);
  EXPECT_EQ(ddm::synthetic::precision(m, far), 0.0);
  EXPECT_EQ(ddm::synthetic::mode_coverage(m, far), 0.0);
  // min_hits: one sample no longer covers a mode.
  EXPECT_EQ(ddm::synthetic::mode_coverage(m, only.cview().subrows(0, 1), {0.99, 2}), 0.0);
  far(0, 0) = std::nan("");
  EXPECT_THROW((void)ddm::synthetic::mean_nll(m, far), ddm::non_finite_error);
}

}  // namespace
