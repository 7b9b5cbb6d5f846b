// Identities between methods, endpoint handling and evaluation counts, on fields where the
// answer does not depend on the test's choice of problem.

#include <gtest/gtest.h>

#include <cmath>

#include <ddm/ddm.hpp>

#include "support/gaussian_flow.hpp"

namespace {

const ddm::host_context ctx{};

// A nonlinear, time-dependent field with no special structure.
struct wiggly_field {
  template <class T>
  void operator()(ddm::batch_view<const T> x, double t, ddm::batch_view<T> v) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t c = 0; c < x.cols(); ++c) {
        const double xv = x(r, c);
        v(r, c) = static_cast<T>(std::sin(3 * xv + static_cast<double>(c)) * (1 + t) - 0.5 * xv * t + 0.1 * static_cast<double>(r));
      }
  }
};

ddm::batch<double> start(ddm::index_t rows = 5, ddm::index_t cols = 7) {
  ddm::batch<double> x(rows, cols);
  ddm::fill_normal(ctx, x.view(), 17);
  return x;
}

template <class Integrator>
ddm::batch<double> run(const Integrator& integ, const ddm::time_schedule& s) {
  auto x = start();
  ddm::sample(wiggly_field{}, x, s, integ);
  return x;
}

TEST(Identities, FirstOrderDpmSolverEqualsEulerEqualsDdim) {
  for (const auto& s : {ddm::schedules::uniform(10), ddm::schedules::karras(12), ddm::schedules::shifted(9, 3.0),
                        ddm::schedules::uniform_lambda(8, 0.9, 0.05, false)}) {
    const auto e = run(ddm::euler{}, s);
    const auto d = run(ddm::ddim{}, s);
    const auto p = run(ddm::dpmpp_1{}, s);
    EXPECT_LT(ddm::test::max_abs_diff(e.cview(), d.cview()), 1e-12);
    EXPECT_LT(ddm::test::max_abs_diff(e.cview(), p.cview()), 1e-12);
  }
}

// The step into t = 0 of Heun and of DPM-Solver++(2S) is Euler's step; so is the first step of
// the multistep methods (no history) and 2S's step from t = 1.
TEST(Identities, EndpointStepsAreEulerSteps) {
  auto one_step = [](const auto& integ, double t, double t_next) {
    auto x = start();
    auto st = integ.template make_stepper<double>(ctx, x.rows(), x.cols());
    wiggly_field f;
    st.step(f, x.view(), t, t_next);
    return x;
  };
  for (auto [t, t_next] : {std::pair{0.3, 0.0}, std::pair{0.05, 0.0}}) {
    const auto e = one_step(ddm::euler{}, t, t_next);
    EXPECT_LT(ddm::test::max_abs_diff(one_step(ddm::heun{}, t, t_next).cview(), e.cview()), 1e-14);
    EXPECT_LT(ddm::test::max_abs_diff(one_step(ddm::dpmpp_2s{}, t, t_next).cview(), e.cview()), 1e-14);
    EXPECT_LT(ddm::test::max_abs_diff(one_step(ddm::dpmpp_2m{}, t, t_next).cview(), e.cview()), 1e-14);
    EXPECT_LT(ddm::test::max_abs_diff(one_step(ddm::dpmpp_3m{}, t, t_next).cview(), e.cview()), 1e-14);
  }
  for (auto [t, t_next] : {std::pair{1.0, 0.9}, std::pair{0.6, 0.4}}) {
    const auto e = one_step(ddm::euler{}, t, t_next);
    EXPECT_LT(ddm::test::max_abs_diff(one_step(ddm::dpmpp_2m{}, t, t_next).cview(), e.cview()), 1e-14);
    EXPECT_LT(ddm::test::max_abs_diff(one_step(ddm::dpmpp_3m{}, t, t_next).cview(), e.cview()), 1e-14);
  }
  const auto e = one_step(ddm::euler{}, 1.0, 0.75);
  EXPECT_LT(ddm::test::max_abs_diff(one_step(ddm::dpmpp_2s{}, 1.0, 0.75).cview(), e.cview()), 1e-14);
}

// When the data prediction D = x - t v is a constant c, the flow is x(t') = (t'/t) x + (1 - t'/t) c
// and every exponential integrator reproduces it exactly, whatever the step.
TEST(Identities, ExponentialIntegratorsAreExactForConstantDataPrediction) {
  auto field = [](ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t c = 0; c < x.cols(); ++c) v(r, c) = (x(r, c) - (0.25 * static_cast<double>(c) - 1.0)) / t;
  };
  const auto s = ddm::schedules::uniform_lambda(7, 0.95, 0.02, true);
  for (int which = 0; which < 3; ++which) {
    auto x = start();
    auto x_start = start();
    if (which == 0) ddm::sample(field, x, s, ddm::dpmpp_2m{});
    if (which == 1) ddm::sample(field, x, s, ddm::dpmpp_3m{});
    if (which == 2) ddm::sample(field, x, s, ddm::dpmpp_2s{});
    // t' = 0: x = c
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t c = 0; c < x.cols(); ++c) EXPECT_NEAR(x(r, c), 0.25 * static_cast<double>(c) - 1.0, 1e-13) << which;
    (void)x_start;
  }
}

// Counting field evaluations against what each integrator declares.
TEST(Identities, FieldEvaluationsMatchTheDeclaredCounts) {
  auto check = [](const auto& integ) {
    for (const auto& s : {ddm::schedules::uniform(9), ddm::schedules::uniform(6, 0.9, 0.1),
                          ddm::schedules::karras(8), ddm::time_schedule({0.8, 0.5, 0.0})}) {
      auto x = start();
      long calls = 0;
      auto counted = [&](ddm::batch_view<const double> xs, double t, ddm::batch_view<double> v) {
        ++calls;
        wiggly_field{}(xs, t, v);
      };
      const auto r = ddm::sample(counted, x, s, integ);
      EXPECT_EQ(static_cast<std::size_t>(calls), integ.evaluations(s)) << integ.name();
      EXPECT_EQ(r.field_evaluations, integ.evaluations(s)) << integ.name();
      EXPECT_LE(integ.evaluations(s), s.steps() * static_cast<std::size_t>(integ.evaluations_per_step));
    }
  };
  check(ddm::euler{});
  check(ddm::ddim{});
  check(ddm::heun{});
  check(ddm::dpmpp_1{});
  check(ddm::dpmpp_2m{});
  check(ddm::dpmpp_3m{});
  check(ddm::dpmpp_2s{});
  EXPECT_EQ(ddm::heun{}.evaluations(ddm::schedules::uniform(10)), 19U);
  EXPECT_EQ(ddm::dpmpp_2s{}.evaluations(ddm::schedules::uniform(10)), 18U);
}

TEST(Identities, FloatAndDoubleAgreeToFloatPrecision) {
  const ddm::test::gaussian_flow f{{0.7, -0.3, 0.2}, 0.5};
  ddm::batch<double> xd(4, 3);
  ddm::batch<float> xf(4, 3);
  ddm::fill_normal(ctx, xd.view(), 2);
  ddm::fill_normal(ctx, xf.view(), 2);
  ddm::sample(f, xd, ddm::schedules::uniform(20), ddm::dpmpp_3m{});
  ddm::sample(f, xf, ddm::schedules::uniform(20), ddm::dpmpp_3m{});
  EXPECT_LT(ddm::test::max_abs_diff(xd.cview(), xf.cview()), 1e-5);
}

}  // namespace
