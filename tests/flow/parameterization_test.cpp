#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <ddm/core/rng.hpp>
#include <ddm/flow/parameterization.hpp>

#include "support/gaussian_flow.hpp"

namespace {

const ddm::host_context ctx{};

TEST(Lambda, IsStableAtBothEndsAndInvertible) {
  EXPECT_EQ(ddm::flow::lambda(1.0), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(ddm::flow::lambda(0.0), std::numeric_limits<double>::infinity());
  EXPECT_DOUBLE_EQ(ddm::flow::lambda(0.5), 0.0);
  // Near 1, a naive log((1 - t)/t) is fine but near 0 it is too: check the relative accuracy at
  // both ends against log1p-based closed forms.
  const double tiny = 1e-300;
  EXPECT_NEAR(ddm::flow::lambda(tiny), -std::log(tiny), 1e-12 * std::abs(std::log(tiny)));
  const double near_one = 1.0 - 1e-12;
  EXPECT_NEAR(ddm::flow::lambda(near_one), std::log(1e-12), 1e-3);
  for (double t : {1e-9, 1e-4, 0.1, 0.37, 0.5, 0.9, 1 - 1e-6})
    EXPECT_NEAR(ddm::flow::t_from_lambda(ddm::flow::lambda(t)), t, 1e-12 * t) << t;
  EXPECT_EQ(ddm::flow::t_from_lambda(-std::numeric_limits<double>::infinity()), 1.0);
  EXPECT_EQ(ddm::flow::t_from_lambda(std::numeric_limits<double>::infinity()), 0.0);
}

// On Gaussian data the exact velocity, the exact noise prediction and the exact data prediction
// are linked by the conversions; each adapter must give back the velocity.
TEST(Adapters, EpsAndX0PredictionsBecomeTheVelocity) {
  ddm::test::gaussian_flow flow{{0.3, -0.7, 1.1}, 0.6};
  ddm::batch<double> x(4, 3);
  ddm::fill_normal(ctx, x.view(), 9);
  ddm::batch<double> v(4, 3);
  ddm::batch<double> got(4, 3);
  auto eps_model = [&](ddm::batch_view<const double> xs, double t, ddm::batch_view<double> out) {
    flow(xs, t, out);
    ddm::flow::eps_hat(ctx, xs, ddm::batch_view<const double>(out), t, out);
  };
  auto x0_model = [&](ddm::batch_view<const double> xs, double t, ddm::batch_view<double> out) {
    flow(xs, t, out);
    ddm::flow::x0_hat(ctx, xs, ddm::batch_view<const double>(out), t, out);
  };
  ddm::flow::eps_velocity from_eps(eps_model);
  ddm::flow::x0_velocity from_x0(x0_model);
  for (double t : {0.05, 0.3, 0.7, 0.95}) {
    flow(x.cview(), t, v.view());
    from_eps(x.cview(), t, got.view());
    EXPECT_LT(ddm::test::max_abs_diff(got.cview(), v.cview()), 1e-12) << t;
    from_x0(x.cview(), t, got.view());
    EXPECT_LT(ddm::test::max_abs_diff(got.cview(), v.cview()), 1e-12) << t;
  }
  EXPECT_THROW(ddm::flow::eps_velocity(eps_model, 0.0), ddm::argument_error);
}

// A VP eps-model sees x / c and its own timestep; the adapter must undo both.
TEST(Adapters, VariancePreservingEpsExpertBecomesTheVelocity) {
  ddm::test::gaussian_flow flow{{0.3, -0.7}, 0.6};
  const ddm::flow::linear_beta_timesteps timesteps;
  // A "DDPM" that knows the truth: from (x_vp, tau) it recovers t from tau, rescales, and
  // returns the exact eps prediction.
  auto vp_model = [&](ddm::batch_view<const double> x_vp, double tau, ddm::batch_view<double> out) {
    // Invert tau -> alpha_bar -> t by bisection on the adapter's own map.
    double lo = 1e-6, hi = 1 - 1e-6;
    for (int i = 0; i < 200; ++i) {
      const double mid = 0.5 * (lo + hi);
      const double c = std::hypot(1 - mid, mid);
      const double ab = ((1 - mid) / c) * ((1 - mid) / c);
      (timesteps(ab) < tau ? lo : hi) = mid;
    }
    const double t = 0.5 * (lo + hi);
    const double c = std::hypot(1 - t, t);
    ddm::batch<double> x(x_vp.rows(), x_vp.cols());
    ddm::lincomb(ctx, x.view(), {c}, x_vp);
    flow(x.cview(), t, out);
    ddm::flow::eps_hat(ctx, x.cview(), ddm::batch_view<const double>(out), t, out);
  };
  auto field = ddm::flow::make_vp_eps_velocity<double>(vp_model, timesteps);
  ddm::batch<double> x(3, 2);
  ddm::fill_normal(ctx, x.view(), 4);
  ddm::batch<double> v(3, 2);
  ddm::batch<double> got(3, 2);
  for (double t : {0.2, 0.5, 0.8}) {
    flow(x.cview(), t, v.view());
    field(x.cview(), t, got.view());
    EXPECT_LT(ddm::test::max_abs_diff(got.cview(), v.cview()), 1e-6) << t;
  }
}

// A model with per-sample conditioning: predicts row-dependent constants c[rows(i)] * (i + 1),
// and records whether it was given row indices.
struct conditioned_model {
  std::vector<double> c{2.0, -1.0, 0.5};
  bool got_rows = false;
  void operator()(ddm::batch_view<const double> x, double, ddm::batch_view<double> out) {
    got_rows = false;
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t j = 0; j < x.cols(); ++j) out(r, j) = c[static_cast<std::size_t>(r)];
  }
  void operator()(ddm::batch_view<const double> x, double, ddm::batch_view<double> out,
                  ddm::batch_view<const std::int32_t> rows) {
    got_rows = true;
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t j = 0; j < x.cols(); ++j) out(r, j) = c[static_cast<std::size_t>(rows(r, 0))];
  }
};

TEST(Adapters, PassRowIndicesToConditionedModels) {
  ddm::batch<double> x(2, 3);
  ddm::fill_normal(ctx, x.view(), 5);
  const std::int32_t idx[2] = {2, 0};  // this sub-batch holds rows 2 and 0 of the sampled batch
  const ddm::batch_view<const std::int32_t> rows(idx, 2, 1);
  const double t = 0.3;
  ddm::batch<double> v(2, 3);

  ddm::flow::eps_velocity<conditioned_model> eps{conditioned_model{}};
  eps(x.cview(), t, v.view(), rows);
  EXPECT_TRUE(eps.model().got_rows);
  for (ddm::index_t r = 0; r < 2; ++r)  // v = (eps_hat - x) / (1 - t)
    EXPECT_DOUBLE_EQ(v(r, 1), (eps.model().c[static_cast<std::size_t>(idx[r])] - x(r, 1)) / (1 - t));

  ddm::flow::x0_velocity<conditioned_model> x0{conditioned_model{}};
  x0(x.cview(), t, v.view(), rows);
  EXPECT_TRUE(x0.model().got_rows);
  for (ddm::index_t r = 0; r < 2; ++r)  // v = (x - x0_hat) / t
    EXPECT_DOUBLE_EQ(v(r, 2), (x(r, 2) - x0.model().c[static_cast<std::size_t>(idx[r])]) / t);

  auto vp = ddm::flow::make_vp_eps_velocity<double>(conditioned_model{}, ddm::flow::linear_beta_timesteps{});
  ddm::batch<double> plain(2, 3);
  vp(x.cview(), t, v.view(), rows);
  for (ddm::index_t r = 0; r < 2; ++r)
    EXPECT_DOUBLE_EQ(v(r, 0), (conditioned_model{}.c[static_cast<std::size_t>(idx[r])] - x(r, 0)) / (1 - t));
  // Without indices, row i is conditioned on row i.
  vp(x.cview(), t, plain.view());
  EXPECT_DOUBLE_EQ(plain(1, 0), (conditioned_model{}.c[1] - x(1, 0)) / (1 - t));
}

TEST(LinearBetaTimesteps, InvertsTheCumulativeProduct) {
  const ddm::flow::linear_beta_timesteps ts(1000, 1e-4, 0.02);
  double ab = 1;
  for (int i = 0; i < 1000; ++i) {
    ab *= 1 - (1e-4 + (0.02 - 1e-4) * i / 999.0);
    if (i % 111 == 0) {
      EXPECT_NEAR(ts(ab), i, 1e-9) << i;
    }
  }
  EXPECT_EQ(ts(1.0), 0.0);
  EXPECT_EQ(ts(1e-30), 999.0);
  EXPECT_THROW(ddm::flow::linear_beta_timesteps(1), ddm::argument_error);
}

}  // namespace
