// Expert sets (heterogeneous, homogeneous, type-erased), conditioning pass-through, and the
// grouping primitives of the routed field.

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <ddm/ddm.hpp>

#include "support/gaussian_flow.hpp"

namespace {

const ddm::host_context ctx{};

// v = c everywhere.
struct constant_field {
  double c;
  void operator()(ddm::batch_view<const double> x, double /*t*/, ddm::batch_view<double> v) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t j = 0; j < x.cols(); ++j) v(r, j) = c;
  }
};

// v(r, :) = the original row index it was given (or -1 when called without).
struct row_echo {
  std::shared_ptr<int> plain_calls = std::make_shared<int>(0);
  void operator()(ddm::batch_view<const double> x, double /*t*/, ddm::batch_view<double> v) const {
    ++*plain_calls;
    ddm::fill(ctx, v, -1.0);
    (void)x;
  }
  void operator()(ddm::batch_view<const double> x, double /*t*/, ddm::batch_view<double> v,
                  ddm::row_index_view<> rows) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t j = 0; j < x.cols(); ++j) v(r, j) = rows(r, 0);
  }
};

// A move-only expert (it owns a buffer), as a DiT with its workspace would be.
struct move_only_field {
  ddm::batch<double> workspace{1, 1};
  void operator()(ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) {
    ddm::lincomb(ctx, v, {t}, x);
  }
};

static_assert(ddm::conditioned_velocity_field<row_echo, double>);
static_assert(!ddm::conditioned_velocity_field<constant_field, double>);
static_assert(ddm::expert_set<ddm::ensemble<constant_field, row_echo>, double>);
static_assert(ddm::expert_set<ddm::expert_vector<constant_field>, double>);
static_assert(ddm::expert_set<ddm::any_ensemble<double>, double>);
static_assert(!ddm::expert_set<ddm::ensemble<constant_field>, float>, "constant_field only handles double");

TEST(Ensembles, HeterogeneousEnsembleDispatchesByIndex) {
  auto e = ddm::make_ensemble(constant_field{1.5}, row_echo{}, constant_field{-2.0});
  EXPECT_EQ(e.size(), 3u);
  ddm::batch<double> x(4, 2), v(4, 2);
  e.evaluate(0, x.cview(), 0.5, v.view());
  EXPECT_EQ(v(3, 1), 1.5);
  e.evaluate(2, x.cview(), 0.5, v.view());
  EXPECT_EQ(v(0, 0), -2.0);
  e.evaluate(1, x.cview(), 0.5, v.view());  // whole batch, no indices: the plain call
  EXPECT_EQ(v(2, 0), -1.0);
  EXPECT_EQ(*e.get<1>().plain_calls, 1);
  EXPECT_THROW(e.evaluate(3, x.cview(), 0.5, v.view()), ddm::argument_error);
}

TEST(Ensembles, RowIndicesReachOnlyTheExpertsThatTakeThem) {
  auto e = ddm::make_ensemble(constant_field{7.0}, row_echo{});
  ddm::batch<double> x(3, 2), v(3, 2);
  const std::int32_t idx[3] = {11, 4, 29};
  const ddm::row_index_view<> rows(idx, 3, 1);
  e.evaluate(1, x.cview(), 0.5, v.view(), rows);
  EXPECT_EQ(v(0, 0), 11);
  EXPECT_EQ(v(1, 1), 4);
  EXPECT_EQ(v(2, 0), 29);
  e.evaluate(0, x.cview(), 0.5, v.view(), rows);  // a plain expert ignores them
  EXPECT_EQ(v(2, 0), 7.0);
}

TEST(Ensembles, ExpertVectorAndTypeErasedExperts) {
  ddm::expert_vector<constant_field> ev(std::vector<constant_field>{{1.0}, {2.0}, {3.0}});
  ddm::batch<double> x(2, 2), v(2, 2);
  x(1, 1) = 4.0;
  ev.evaluate(2, x.cview(), 0.5, v.view());
  EXPECT_EQ(v(1, 0), 3.0);
  EXPECT_THROW(ev.evaluate(3, x.cview(), 0.5, v.view()), ddm::argument_error);

  ddm::any_ensemble<double> any;
  any.push_back(constant_field{5.0});
  any.push_back(row_echo{});
  any.push_back(move_only_field{});
  EXPECT_EQ(any.size(), 3u);
  EXPECT_FALSE(any[0].takes_rows());
  EXPECT_TRUE(any[1].takes_rows());
  any.evaluate(2, x.cview(), 0.25, v.view());
  EXPECT_EQ(v(1, 1), 1.0);
  const std::int32_t idx[2] = {8, 9};
  any.evaluate(1, x.cview(), 0.25, v.view(), ddm::row_index_view<>(idx, 2, 1));
  EXPECT_EQ(v(1, 0), 9.0);
}

TEST(Ensembles, ForwardExactJacobianVectorProducts) {
  auto e = ddm::make_ensemble(ddm::test::gaussian_flow{{0.0, 1.0}, 0.5}, ddm::test::gaussian_flow{{2.0, 2.0}, 0.2});
  static_assert(ddm::has_jvp<ddm::test::gaussian_flow, double>);
  ddm::batch<double> x(2, 2), u(2, 2), out(2, 2);
  ddm::fill(ctx, u.view(), 1.0);
  e.jvp(1, x.cview(), 0.3, u.cview(), out.view());
  const double s2 = 0.04, var = 0.49 * s2 + 0.09;
  EXPECT_NEAR(out(0, 0), (0.3 - 0.7 * s2) / var, 1e-15);
}

TEST(Grouping, CountingSortByExpertKeepsRowsAscending) {
  constexpr ddm::index_t B = 6, K = 4;
  const std::uint8_t sel_rows[B][K] = {{1, 0, 1, 0}, {0, 0, 1, 0}, {1, 1, 0, 0},
                                       {0, 0, 1, 0}, {1, 0, 0, 0}, {0, 1, 1, 0}};
  ddm::batch<std::uint8_t> sel(B, K);
  for (ddm::index_t r = 0; r < B; ++r)
    for (ddm::index_t k = 0; k < K; ++k) sel(r, k) = sel_rows[r][k];
  ddm::batch<std::int32_t> idx(B * K, 1);
  std::vector<ddm::index_t> offsets(K + 1);
  ddm::group_rows_by_expert(ctx, sel.cview(), idx.view(), std::span<ddm::index_t>(offsets));
  EXPECT_EQ(offsets, (std::vector<ddm::index_t>{0, 3, 5, 9, 9}));
  const std::vector<std::int32_t> expected{0, 2, 4, 2, 5, 0, 1, 3, 5};
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(idx(static_cast<ddm::index_t>(i), 0), expected[i]) << i;
  std::vector<ddm::index_t> short_offsets(K);
  EXPECT_THROW(ddm::group_rows_by_expert(ctx, sel.cview(), idx.view(), std::span<ddm::index_t>(short_offsets)),
               ddm::shape_error);
}

TEST(Grouping, GatherAndWeightedScatterAdd) {
  ddm::batch<double> x(5, 3), w(5, 2), vk(2, 3), v(5, 3);
  for (ddm::index_t r = 0; r < 5; ++r) {
    for (ddm::index_t c = 0; c < 3; ++c) x(r, c) = 10.0 * static_cast<double>(r) + static_cast<double>(c);
    w(r, 1) = 0.5 + static_cast<double>(r);
  }
  const std::int32_t idx[2] = {4, 1};
  const ddm::row_index_view<> rows(idx, 2, 1);
  ddm::batch<double> g(2, 3);
  ddm::gather_rows(ctx, x.cview(), rows, g.view());
  EXPECT_EQ(g(0, 2), 42.0);
  EXPECT_EQ(g(1, 0), 10.0);
  ddm::fill(ctx, vk.view(), 2.0);
  ddm::fill(ctx, v.view(), 1.0);
  ddm::scatter_add_weighted(ctx, v.view(), w.cview(), 1, rows, vk.cview());
  EXPECT_EQ(v(4, 0), 1.0 + 2.0 * 4.5);
  EXPECT_EQ(v(1, 2), 1.0 + 2.0 * 1.5);
  EXPECT_EQ(v(0, 0), 1.0);
  const std::int32_t bad[1] = {5};
  ddm::batch<double> g1(1, 3);
  EXPECT_THROW(ddm::gather_rows(ctx, x.cview(), ddm::row_index_view<>(bad, 1, 1), g1.view()), ddm::argument_error);
  EXPECT_THROW(ddm::scatter_add_weighted(ctx, v.view(), w.cview(), 2, rows, vk.cview()), ddm::argument_error);
}

}  // namespace
