// The routing-generic instruments (disagreement, angular deviation, alignment ranks) on small
// hand-made cases; every expected value is computed by hand in the comments.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <numbers>
#include <span>
#include <vector>

#include <ddm/ddm.hpp>

namespace {

namespace dd = ddm::diagnostics;
using view = ddm::batch_view<const double>;
const ddm::host_context ctx{};

ddm::batch<double> rows_of(std::initializer_list<std::initializer_list<double>> rows) {
  const auto b = static_cast<ddm::index_t>(rows.size());
  const auto d = static_cast<ddm::index_t>(rows.begin()->size());
  ddm::batch<double> x(b, d);
  ddm::index_t r = 0;
  for (const auto& row : rows) {
    ddm::index_t c = 0;
    for (double v : row) x(r, c++) = v;
    ++r;
  }
  return x;
}

ddm::batch<std::uint8_t> mask_of(std::initializer_list<std::initializer_list<int>> rows) {
  const auto b = static_cast<ddm::index_t>(rows.size());
  const auto k = static_cast<ddm::index_t>(rows.begin()->size());
  ddm::batch<std::uint8_t> m(b, k);
  ddm::index_t r = 0;
  for (const auto& row : rows) {
    ddm::index_t c = 0;
    for (int v : row) m(r, c++) = static_cast<std::uint8_t>(v);
    ++r;
  }
  return m;
}

TEST(ExpertDisagreement, MeanPairwiseDistanceByHand) {
  // Row 0: v1 = (0, 0), v2 = (3, 4), v3 = (0, 4): |v1 - v2| = 5, |v1 - v3| = 4, |v2 - v3| = 3,
  // mean (5 + 4 + 3) / 3 = 4. Row 1: all three equal (1, 1): 0.
  // Row 2: (1, 0), (-1, 0), (1, 0): distances 2, 0, 2: mean 4 / 3.
  const auto e1 = rows_of({{0, 0}, {1, 1}, {1, 0}});
  const auto e2 = rows_of({{3, 4}, {1, 1}, {-1, 0}});
  const auto e3 = rows_of({{0, 4}, {1, 1}, {1, 0}});
  const std::vector<view> experts{e1.cview(), e2.cview(), e3.cview()};
  const auto d = dd::expert_disagreement(ctx, std::span<const view>(experts));
  ASSERT_EQ(d.size(), 3U);
  EXPECT_DOUBLE_EQ(d[0], 4.0);
  EXPECT_EQ(d[1], 0.0);
  EXPECT_DOUBLE_EQ(d[2], 4.0 / 3.0);

  // The same three experts stacked as a (K * B, D) = (9, 2) batch.
  ddm::batch<double> stacked(9, 2);
  for (ddm::index_t k = 0; k < 3; ++k)
    ddm::copy(ctx, stacked.view().subrows(3 * k, 3), experts[static_cast<std::size_t>(k)]);
  EXPECT_EQ(dd::expert_disagreement(ctx, stacked.cview(), 3), d);
  EXPECT_THROW((void)dd::expert_disagreement(ctx, stacked.cview(), 4), ddm::shape_error);
  const std::vector<view> one{e1.cview()};
  EXPECT_THROW((void)dd::expert_disagreement(ctx, std::span<const view>(one)), ddm::argument_error);
  const auto wrong = rows_of({{0, 0, 0}, {1, 1, 1}, {1, 0, 0}});
  const std::vector<view> mixed{e1.cview(), wrong.cview()};
  EXPECT_THROW((void)dd::expert_disagreement(ctx, std::span<const view>(mixed)), ddm::shape_error);
}

TEST(ExpertDisagreement, TrajectoryIntegralWeightsEachStepByItsLength) {
  // Steps 1 -> 0.5 -> 0.25 -> 0 with per-row distances {4, 0}, {2, 1}, {8, 2}:
  // row 0: 0.5 * 4 + 0.25 * 2 + 0.25 * 8 = 4.5; row 1: 0 + 0.25 + 0.5 = 0.75.
  dd::integrated_disagreement acc;
  acc.add(1.0, 0.5, std::vector<double>{4, 0});
  acc.add(0.5, 0.25, std::vector<double>{2, 1});
  acc.add(0.25, 0.0, std::vector<double>{8, 2});
  EXPECT_EQ(acc.steps(), 3U);
  EXPECT_DOUBLE_EQ(acc.total()[0], 4.5);
  EXPECT_DOUBLE_EQ(acc.total()[1], 0.75);
  EXPECT_THROW(acc.add(0.0, -0.1, std::vector<double>{1, 2, 3}), ddm::shape_error);
  // A NaN distance is an error, and the totals stay as they were (row 0 is not added first).
  EXPECT_THROW(acc.add(0.25, 0.0, std::vector<double>{1, std::numeric_limits<double>::quiet_NaN()}),
               ddm::non_finite_error);
  EXPECT_EQ(acc.steps(), 3U);
  EXPECT_DOUBLE_EQ(acc.total()[0], 4.5);
  EXPECT_DOUBLE_EQ(acc.total()[1], 0.75);
}

TEST(AngularDeviation, SelectedAndUnselectedMeansAndGapByHand) {
  constexpr double pi = std::numbers::pi;
  // Blended v = (1, 0) in every row. Experts: (1, 0) angle 0, (0, 1) angle pi/2, (-1, 0) angle pi,
  // (1, 1) angle pi/4.
  const auto blended = rows_of({{1, 0}, {1, 0}, {1, 0}, {1, 0}});
  const auto e0 = rows_of({{1, 0}, {1, 0}, {1, 0}, {0, 0}});
  const auto e1 = rows_of({{0, 1}, {0, 1}, {0, 1}, {0, 1}});
  const auto e2 = rows_of({{-1, 0}, {-1, 0}, {-1, 0}, {-1, 0}});
  const auto e3 = rows_of({{1, 1}, {1, 1}, {1, 1}, {1, 1}});
  const std::vector<view> experts{e0.cview(), e1.cview(), e2.cview(), e3.cview()};
  // Row 0: experts 0 and 3 selected: sel = (0 + pi/4) / 2 = pi/8, non = (pi/2 + pi) / 2 = 3 pi/4,
  //        gap = (3 pi/4 - pi/8) / (3 pi/4) = 5/6.
  // Row 1: all selected (full ensemble): non-selected group empty, gap undefined.
  // Row 2: none selected: selected group empty, gap undefined.
  // Row 3: expert 0 is the zero vector (no angle); selected {0, 1}: sel = pi/2 (one angle),
  //        non = (pi + pi/4) / 2 = 5 pi/8, gap = (5 pi/8 - pi/2) / (5 pi/8) = 1/5.
  const auto sel = mask_of({{1, 0, 0, 1}, {1, 1, 1, 1}, {0, 0, 0, 0}, {1, 1, 0, 0}});
  const auto a = dd::angular_deviation(ctx, std::span<const view>(experts), blended.cview(), sel.cview());
  EXPECT_NEAR(a.selected_angle[0], pi / 8, 1e-15);
  EXPECT_NEAR(a.unselected_angle[0], 3 * pi / 4, 1e-15);
  EXPECT_NEAR(a.relative_gap[0], 5.0 / 6.0, 1e-15);
  EXPECT_EQ(a.defined[0], 1);
  EXPECT_EQ(a.selected_count[0], 2U);
  EXPECT_EQ(a.unselected_count[0], 2U);

  EXPECT_NEAR(a.selected_angle[1], (0 + pi / 2 + pi + pi / 4) / 4, 1e-15);
  EXPECT_TRUE(std::isnan(a.unselected_angle[1]));
  EXPECT_TRUE(std::isnan(a.relative_gap[1]));
  EXPECT_EQ(a.defined[1], 0);
  EXPECT_EQ(a.unselected_count[1], 0U);

  EXPECT_TRUE(std::isnan(a.selected_angle[2]));
  EXPECT_EQ(a.defined[2], 0);
  EXPECT_EQ(a.selected_count[2], 0U);
  EXPECT_EQ(a.unselected_count[2], 4U);

  EXPECT_NEAR(a.selected_angle[3], pi / 2, 1e-15);
  EXPECT_NEAR(a.unselected_angle[3], 5 * pi / 8, 1e-15);
  EXPECT_NEAR(a.relative_gap[3], 0.2, 1e-15);
  EXPECT_EQ(a.selected_count[3], 1U);
  EXPECT_EQ(a.undefined_angles, 1U);

  // Pooled over the rows: selected angles {0, pi/4 | 0, pi/2, pi, pi/4 | - | pi/2}: sum
  // (1 + 7 + 2) pi/4 = 10 pi/4 over 7; unselected {pi/2, pi | - | 0, pi/2, pi, pi/4 | pi, pi/4}:
  // sum (6 + 7 + 5) pi/4 = 18 pi/4 over 8. Gap = (18/32 - 10/28) / (18/32) = 23/63.
  dd::angular_deviation_summary pooled;
  pooled.add(a);
  EXPECT_NEAR(*pooled.selected_mean(), 10 * pi / 28, 1e-14);
  EXPECT_NEAR(*pooled.unselected_mean(), 18 * pi / 32, 1e-14);
  EXPECT_NEAR(*pooled.relative_gap(), 23.0 / 63.0, 1e-14);
  EXPECT_EQ(pooled.selected_angles(), 7U);
  EXPECT_EQ(pooled.unselected_angles(), 8U);
  EXPECT_EQ(pooled.undefined_angles(), 1U);
  EXPECT_FALSE(dd::angular_deviation_summary{}.relative_gap().has_value());
}

TEST(AngularDeviation, AngleIsAccurateNearZeroAndPi) {
  // acos of the cosine loses half the digits near 0; Kahan's formula does not.
  const double eps = 1e-9;
  const double a[] = {1.0, 0.0, 0.0};
  const double b[] = {std::cos(eps), std::sin(eps), 0.0};
  const double c[] = {-std::cos(eps), std::sin(eps), 0.0};
  EXPECT_NEAR(dd::angle_between(a, b, 3) / eps, 1.0, 1e-6);
  EXPECT_NEAR(std::numbers::pi - dd::angle_between(a, c, 3), eps, 1e-15);
  const double zero[] = {0.0, 0.0, 0.0};
  EXPECT_EQ(dd::angle_between(a, zero, 3), -1.0);
}

TEST(AngularDeviation, BadMaskIsAnError) {
  const auto v = rows_of({{1, 0}});
  const std::vector<view> experts{v.cview(), v.cview()};
  const auto three = mask_of({{1, 0, 0}});
  const auto two = mask_of({{1, 2}});
  EXPECT_THROW((void)dd::angular_deviation(ctx, std::span<const view>(experts), v.cview(), three.cview()), ddm::shape_error);
  EXPECT_THROW((void)dd::angular_deviation(ctx, std::span<const view>(experts), v.cview(), two.cview()), ddm::argument_error);
}

// A NaN or infinite velocity has no direction; counting it as an undefined (zero-velocity) angle,
// or letting it through into a NaN mean, would hide a broken expert. It is an error naming where.
TEST(AngularDeviation, NonFiniteVelocitiesAreErrorsNamingTheViewAndRow) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const auto good = rows_of({{1, 0}, {0, 1}});
  const auto with_nan = rows_of({{1, 0}, {nan, 1}});
  const auto with_inf = rows_of({{1, inf}, {0, 1}});
  const auto sel = mask_of({{1, 0}, {1, 0}});
  auto message = [&](const std::vector<view>& experts, view blended) {
    try {
      (void)dd::angular_deviation(ctx, std::span<const view>(experts), blended, sel.cview());
    } catch (const ddm::non_finite_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string a = message({good.cview(), with_nan.cview()}, good.cview());
  EXPECT_NE(a.find("'experts' view 1"), std::string::npos) << a;
  EXPECT_NE(a.find("row 1"), std::string::npos) << a;
  const std::string b = message({good.cview(), with_inf.cview()}, good.cview());
  EXPECT_NE(b.find("row 0"), std::string::npos) << b;
  const std::string c = message({good.cview(), good.cview()}, with_nan.cview());
  EXPECT_NE(c.find("'blended'"), std::string::npos) << c;
  // A zero velocity is still an undefined angle, not an error.
  const auto zero = rows_of({{0, 0}, {0, 0}});
  const std::vector<view> experts{good.cview(), zero.cview()};
  const auto r = dd::angular_deviation(ctx, std::span<const view>(experts), good.cview(), sel.cview());
  EXPECT_EQ(r.undefined_angles, 2U);
}

TEST(AlignmentRanks, NonFiniteStateIsAnErrorNotRankOne) {
  // A NaN distance compares false with every other, so the rank count would give a NaN state rank 1.
  const auto centroids = rows_of({{0, 0}, {2, 0}, {0, 3}});
  const auto x = rows_of({{std::numeric_limits<double>::quiet_NaN(), 0.5}});
  const auto v = rows_of({{1, 1}});
  const auto sel = mask_of({{0, 0, 1}});
  EXPECT_THROW((void)dd::alignment_ranks(ctx, x.cview(), 0.5, v.cview(), sel.cview(), centroids.cview()),
               ddm::non_finite_error);
  const auto bad_centroids = rows_of({{0, 0}, {2, std::numeric_limits<double>::infinity()}, {0, 3}});
  const auto finite_x = rows_of({{1, 0.5}});
  EXPECT_THROW((void)dd::selected_ranks(ctx, finite_x.cview(), sel.cview(), bad_centroids.cview()), ddm::non_finite_error);
}

TEST(AlignmentRanks, RanksOfSelectedCentroidsByHand) {
  // Centroids c0 = (0, 0), c1 = (2, 0), c2 = (0, 3), c3 = (5, 5).
  const auto centroids = rows_of({{0, 0}, {2, 0}, {0, 3}, {5, 5}});
  // Row 0: x = (2.3, 0.6), v = (1, 1), t = 0.5: x0_hat = x - t v = (1.8, 0.1). Squared distances
  //        c0: 3.24 + 0.01 = 3.25, c1: 0.04 + 0.01 = 0.05, c2: 3.24 + 8.41 = 11.65,
  //        c3: 10.24 + 24.01 = 34.25: ranks c1 = 1, c0 = 2, c2 = 3, c3 = 4.
  //        Selected {0, 1}: ranks 2 and 1, mean 1.5.
  // Row 1: x = (0.5, 3.5), v = (1, 1): x0_hat = (0, 3) = c2: c2 rank 1, c0 (9) rank 2,
  //        c1 (4 + 9 = 13) rank 3, c3 (25 + 4 = 29) rank 4. Selected {3}: rank 4.
  // Row 2: no expert selected.
  const auto x = rows_of({{2.3, 0.6}, {0.5, 3.5}, {0, 0}});
  const auto v = rows_of({{1, 1}, {1, 1}, {0, 0}});
  const auto sel = mask_of({{1, 1, 0, 0}, {0, 0, 0, 1}, {0, 0, 0, 0}});
  const auto r = dd::alignment_ranks(ctx, x.cview(), 0.5, v.cview(), sel.cview(), centroids.cview());
  EXPECT_DOUBLE_EQ(r.mean_rank[0], 1.5);
  EXPECT_DOUBLE_EQ(r.mean_rank[1], 4.0);
  EXPECT_TRUE(std::isnan(r.mean_rank[2]));
  EXPECT_EQ(r.selected_count[0], 2U);
  EXPECT_EQ(r.rows_without_selection, 1U);
  EXPECT_EQ(r.pairs, 3U);
  EXPECT_EQ(r.rank_histogram, (std::vector<std::size_t>{1, 1, 0, 1}));
  EXPECT_DOUBLE_EQ(*r.pooled_mean_rank(), (2.0 + 1.0 + 4.0) / 3.0);
  EXPECT_EQ(r.t, 0.5);
}

TEST(AlignmentRanks, TiesGoToTheLowerExpertIndexAndTheEmbeddingIsApplied) {
  // Embedding phi(x) = (x_0) (first coordinate only), centroids c0 = 1, c1 = 3, c2 = 3, c3 = -1.
  struct first_coordinate {
    [[nodiscard]] ddm::index_t dim(ddm::index_t) const noexcept { return 1; }
    void operator()(const ddm::host_context&, ddm::batch_view<const double> in, ddm::batch_view<double> out) const {
      for (ddm::index_t r = 0; r < in.rows(); ++r) out(r, 0) = in(r, 0);
    }
  };
  static_assert(dd::embedding<first_coordinate, double>);
  const auto centroids = rows_of({{1}, {3}, {3}, {-1}});
  // x0_hat = x at t = 0: phi = 2. Distances |2 - c|: 1, 1, 1, 3: c0, c1, c2 tie, ranks 1, 2, 3 by
  // index; c3 rank 4. The second coordinate (100) would dominate any distance if phi were ignored.
  const auto x = rows_of({{2, 100}});
  const auto v = rows_of({{7, 7}});
  const auto sel = mask_of({{0, 0, 1, 1}});
  const auto r = dd::alignment_ranks(ctx, x.cview(), 0.0, v.cview(), sel.cview(), centroids.cview(), first_coordinate{});
  EXPECT_DOUBLE_EQ(r.mean_rank[0], (3.0 + 4.0) / 2.0);
  EXPECT_EQ(r.rank_histogram, (std::vector<std::size_t>{0, 0, 1, 1}));
  const auto bad = rows_of({{1, 2}, {3, 4}, {5, 6}, {7, 8}});
  EXPECT_THROW((void)dd::alignment_ranks(ctx, x.cview(), 0.0, v.cview(), sel.cview(), bad.cview(), first_coordinate{}),
               ddm::shape_error);
}

TEST(AlignmentProfile, RecordsPerTimeAndPoolsOverATimeWindow) {
  const auto centroids = rows_of({{0, 0}, {10, 0}});
  const auto v = rows_of({{0, 0}, {0, 0}});
  const auto sel = mask_of({{1, 0}, {1, 0}});
  dd::alignment_profile profile;
  // t = 0.7: both rows nearest c0 -> ranks 1, 1. t = 0.3: row 1 at (9, 0) nearest c1 -> ranks 1, 2.
  const auto early = rows_of({{1, 0}, {2, 0}});
  const auto late = rows_of({{1, 0}, {9, 0}});
  profile.add(dd::alignment_ranks(ctx, early.cview(), 0.7, v.cview(), sel.cview(), centroids.cview()));
  profile.add(dd::alignment_ranks(ctx, late.cview(), 0.3, v.cview(), sel.cview(), centroids.cview()));
  ASSERT_EQ(profile.records().size(), 2U);
  EXPECT_EQ(profile.records()[0].t, 0.7);
  EXPECT_DOUBLE_EQ(*profile.records()[0].mean_rank, 1.0);
  EXPECT_DOUBLE_EQ(*profile.records()[1].mean_rank, 1.5);
  EXPECT_DOUBLE_EQ(*profile.pooled_mean_rank(0.0, 0.5), 1.5);
  EXPECT_DOUBLE_EQ(*profile.pooled_mean_rank(0.0, 1.0), 1.25);
  EXPECT_FALSE(profile.pooled_mean_rank(0.8, 1.0).has_value());
}

TEST(AlignmentProfile, NearestStepsToTheStudysTimes) {
  // uniform(10): step i starts at t_i = 1 - i / 10; t = 0.7, 0.5, 0.3 start steps 3, 5, 7.
  const auto steps = dd::nearest_steps(ddm::schedules::uniform(10));
  EXPECT_EQ(steps, (std::vector<std::size_t>{7, 5, 3}));
  // uniform(4): starts 1, 0.75, 0.5, 0.25 (0 starts no step): 0.3 -> 0.25 (step 3), 0.5 -> step 2,
  // 0.7 -> 0.75 (step 1); a request of 0 maps to the last step.
  const double times[] = {0.3, 0.5, 0.7, 0.0};
  EXPECT_EQ(dd::nearest_steps(ddm::schedules::uniform(4), times), (std::vector<std::size_t>{3, 2, 1, 3}));
}

}  // namespace
