// The trajectory instruments: the L_eff observer, end-to-end perturbation amplification and
// step refinement. Known Jacobians along the path, known linear maps from noise to sample,
// measured orders of convergence, and bit-identity of observed runs.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include <ddm/ddm.hpp>

#include "support/gaussian_flow.hpp"
#include "support/linear_field.hpp"

namespace {

namespace dd = ddm::diagnostics;
const ddm::host_context ctx{};

ddm::batch<double> noise(ddm::index_t rows, ddm::index_t cols, std::uint64_t seed) {
  ddm::batch<double> x(rows, cols);
  ddm::fill_normal(ctx, x.view(), seed);
  return x;
}

bool bit_identical(const ddm::batch<double>& a, const ddm::batch<double>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(double) * static_cast<std::size_t>(a.size())) == 0;
}

// v = -(1 + t) x^3 element-wise: J = diag(-3 (1 + t) x^2) depends on the state, so L_eff tells
// where the observer measured. Rademacher probes make Hutchinson exact for a diagonal J:
// L_r = sqrt(mean_j 9 (1 + t)^2 x_j^4).
struct cubic_field {
  template <class T>
  void operator()(ddm::batch_view<const T> x, double t, ddm::batch_view<T> v) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t c = 0; c < x.cols(); ++c) {
        const double a = static_cast<double>(x(r, c));
        v(r, c) = static_cast<T>(-(1 + t) * a * a * a);
      }
  }
  template <class T>
  void jvp(ddm::batch_view<const T> x, double t, ddm::batch_view<const T> u, ddm::batch_view<T> out) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t c = 0; c < x.cols(); ++c) {
        const double a = static_cast<double>(x(r, c));
        out(r, c) = static_cast<T>(-3 * (1 + t) * a * a * static_cast<double>(u(r, c)));
      }
  }
  static double l_eff(ddm::batch_view<const double> x, ddm::index_t r, double t) {
    double s = 0;
    for (ddm::index_t c = 0; c < x.cols(); ++c) s += 9 * (1 + t) * (1 + t) * std::pow(x(r, c), 4);
    return std::sqrt(s / static_cast<double>(x.cols()));
  }
};

// v = -(1 + t) sin(x) + 0.3 x_{c+1}: a smooth, bounded nonlinear field without a jvp member.
struct sine_field {
  template <class T>
  void operator()(ddm::batch_view<const T> x, double t, ddm::batch_view<T> v) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t c = 0; c < x.cols(); ++c)
        v(r, c) = static_cast<T>(-(1 + t) * std::sin(static_cast<double>(x(r, c))) +
                                 0.3 * static_cast<double>(x(r, (c + 1) % x.cols())));
  }
};

// Keeps the state at the start of every step.
struct state_recorder {
  std::vector<ddm::batch<double>> states;
  void on_start(ddm::batch_view<const double> x, double) { keep(x); }
  void operator()(const ddm::step_event<double>& e) { keep(e.x); }
  void keep(ddm::batch_view<const double> x) {
    states.emplace_back(x.rows(), x.cols());
    ddm::copy(ctx, states.back().view(), x);
  }
};

// The Gaussian flow (J = a(t) I, symmetric) with its vjp.
struct isotropic : ddm::test::gaussian_flow {
  template <class T>
  void vjp(ddm::batch_view<const T> x, double t, ddm::batch_view<const T> u, ddm::batch_view<T> out) const {
    jvp(x, t, u, out);
  }
};

// ---------------------------------------------------------------------------------------------
// Trajectory sensitivity

TEST(TrajectorySensitivity, MeasuresAtEachStepsStartingStateAndTime) {
  const cubic_field field;
  const auto s = ddm::schedules::uniform(6);
  auto x = noise(8, 5, 1);
  state_recorder states;
  auto sens = dd::make_trajectory_sensitivity<double>(field, {.hutchinson = {.probes = 2}});
  ddm::sample(field, x, s, ddm::euler{}, states, sens);
  ASSERT_EQ(sens.steps().size(), 6U);
  double worst = 0;
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(sens.steps()[i].step, i);
    EXPECT_EQ(sens.steps()[i].t, s[i]);
    for (ddm::index_t r = 0; r < 8; ++r) {
      const double expect = cubic_field::l_eff(states.states[i].cview(), r, s[i]);
      worst = std::max(worst, std::abs(sens.values()[i][static_cast<std::size_t>(r)] / expect - 1));
    }
  }
  std::printf("[ measured ] L_eff vs sqrt(mean 9 (1+t)^2 x^4) at the step's start: max relative error %.2e\n", worst);
  EXPECT_LT(worst, 1e-14);
  EXPECT_EQ(sens.exact_products(), 12U);
  EXPECT_EQ(sens.field_evaluations(), 0U);
}

TEST(TrajectorySensitivity, StepStatisticsAndCumulativeIqrFollowTheirDefinitions) {
  const sine_field fd;
  const auto s = ddm::schedules::uniform(7);
  auto x = noise(9, 4, 2);
  auto every = noise(9, 4, 2);
  auto sens = dd::make_trajectory_sensitivity<double>(fd, {.hutchinson = {.probes = 3, .seed = 4}});
  auto sparse = dd::make_trajectory_sensitivity<double>(fd, {.every = 3, .hutchinson = {.probes = 3, .seed = 4}});
  ddm::sample(fd, x, s, ddm::heun{}, sens);
  ddm::sample(fd, every, s, ddm::heun{}, sparse);
  double cumulative = 0;
  for (std::size_t j = 0; j < sens.steps().size(); ++j) {
    const auto& st = sens.steps()[j];
    const auto& v = sens.values()[j];
    EXPECT_EQ(st.median, dd::median(v));
    EXPECT_DOUBLE_EQ(st.iqr, dd::iqr(v));
    EXPECT_EQ(st.q1, dd::quantile(v, 0.25));
    EXPECT_EQ(st.q3, dd::quantile(v, 0.75));
    cumulative += st.iqr;
    EXPECT_DOUBLE_EQ(st.cumulative_iqr, cumulative);
  }
  EXPECT_DOUBLE_EQ(sens.cumulative_iqr(), cumulative);
  // Every 3rd step: steps 0, 3, 6 with the same values as measuring every step.
  ASSERT_EQ(sparse.steps().size(), 3U);
  for (std::size_t j = 0; j < 3; ++j) {
    EXPECT_EQ(sparse.steps()[j].step, 3 * j);
    EXPECT_EQ(sparse.values()[j], sens.values()[3 * j]);
  }
  EXPECT_EQ(sparse.field_evaluations(), 3U * 3U * 2U);  // 3 measured steps x 3 probes x 2 (FD)
  // Row means over the measured steps.
  const auto mean = sens.row_mean();
  double m0 = 0;
  for (const auto& v : sens.values()) m0 += v[0];
  EXPECT_DOUBLE_EQ(mean[0], m0 / 7);
}

TEST(TrajectorySensitivity, EveryMeasureGivesTheGainOfAnIsotropicField) {
  // The Gaussian flow has J = a(t) I: RMS singular value, spectral norm and |dominant eigenvalue|
  // all equal |a(t)| in every row, so each step's IQR is 0.
  const isotropic field{{{0.5, -1.0, 0.25}, 0.6}};
  const auto s = ddm::schedules::uniform(5, 0.95, 0.05);
  for (auto m : {dd::sensitivity_measure::frobenius, dd::sensitivity_measure::spectral_norm,
                 dd::sensitivity_measure::dominant_eigenvalue}) {
    auto x = noise(6, 3, 3);
    auto sens = dd::make_trajectory_sensitivity<double>(field, {.measure = m});
    ddm::sample(field, x, s, ddm::dpmpp_2m{}, sens);
    for (const auto& st : sens.steps()) {
      const double var = (1 - st.t) * (1 - st.t) * 0.36 + st.t * st.t;
      const double a = std::abs((st.t - (1 - st.t) * 0.36) / var);
      EXPECT_NEAR(st.median, a, 1e-12) << dd::to_string(m) << " t = " << st.t;
      EXPECT_NEAR(st.iqr, 0.0, 1e-12);
    }
  }
}

TEST(TrajectorySensitivity, ObservedTrajectoriesAreBitIdentical) {
  const sine_field fd;
  const auto f = ddm::test::linear_field::random(4, 5);
  const auto s = ddm::schedules::uniform(8);
  {
    auto plain = noise(5, 4, 6);
    auto watched = noise(5, 4, 6);
    ddm::sample(fd, plain, s, ddm::dpmpp_3m{});
    auto sens = dd::make_trajectory_sensitivity<double>(fd);
    auto eig = dd::make_trajectory_sensitivity<double>(fd, {.measure = dd::sensitivity_measure::dominant_eigenvalue});
    ddm::sample(fd, watched, s, ddm::dpmpp_3m{}, sens, eig);
    EXPECT_TRUE(bit_identical(plain, watched));
    EXPECT_GT(sens.field_evaluations(), 0U);
  }
  {
    auto plain = noise(5, 4, 7);
    auto watched = noise(5, 4, 7);
    ddm::sample(f, plain, s, ddm::heun{});
    auto spec = dd::make_trajectory_sensitivity<double>(f, {.measure = dd::sensitivity_measure::spectral_norm, .every = 2});
    ddm::sample(f, watched, s, ddm::heun{}, spec);
    EXPECT_TRUE(bit_identical(plain, watched));
    EXPECT_EQ(spec.steps().size(), 4U);
  }
}

TEST(TrajectorySensitivity, WorksOnFloatStates) {
  const sine_field field;
  ddm::batch<float> plain(4, 6), watched(4, 6);
  ddm::fill_normal(ctx, plain.view(), 21);
  ddm::fill_normal(ctx, watched.view(), 21);
  ddm::sample(field, plain, ddm::schedules::uniform(5), ddm::heun{});
  auto sens = dd::make_trajectory_sensitivity<float>(field);
  ddm::sample(field, watched, ddm::schedules::uniform(5), ddm::heun{}, sens);
  EXPECT_EQ(std::memcmp(plain.data(), watched.data(), sizeof(float) * 24), 0);
  ASSERT_EQ(sens.steps().size(), 5U);
  // |J| of this field is at most (1 + t) + 0.3 in any norm.
  for (const auto& st : sens.steps()) EXPECT_LE(st.q3, 2.3 + 1e-3);
}

TEST(TrajectorySensitivity, MisuseIsAnError) {
  const cubic_field cubic;
  EXPECT_THROW((void)dd::make_trajectory_sensitivity<double>(cubic, {.measure = dd::sensitivity_measure::spectral_norm}),
               ddm::argument_error);
  EXPECT_THROW((void)dd::make_trajectory_sensitivity<double>(cubic, {.every = 0}), ddm::argument_error);
  auto sens = dd::make_trajectory_sensitivity<double>(cubic);
  const auto x = noise(2, 2, 8);
  EXPECT_THROW(sens(ddm::step_event<double>{0, 1.0, 0.5, x.cview(), x.cview()}), ddm::argument_error);
}

// ---------------------------------------------------------------------------------------------
// Perturbation amplification

// Euler on v = A x maps x_1 to M x_1 with M = prod_i (I + (t_{i+1} - t_i) A): the amplification
// of delta is ||M delta|| / ||delta|| exactly, whatever the size of delta.
TEST(PerturbationAmplification, IsTheGainOfTheSamplersLinearMapOnALinearField) {
  const ddm::index_t d = 5;
  const auto f = ddm::test::linear_field::random(d, 9);
  const auto s = ddm::schedules::uniform(12);
  const auto x1 = noise(4, d, 10);
  ddm::batch<double> delta(4, d);
  ddm::fill_normal(ctx, delta.view(), 11);
  const auto result = dd::perturbation_amplification(ctx, f, x1.cview(), delta.cview(), s, ddm::euler{});
  EXPECT_EQ(result.field_evaluations, 24U);
  // M delta, step by step: y <- y + dt A y.
  ddm::batch<double> y(4, d), ay(4, d);
  ddm::copy(ctx, y.view(), delta.cview());
  for (std::size_t i = 0; i < s.steps(); ++i) {
    f(y.cview(), s[i], ay.view());
    ddm::lincomb(ctx, y.view(), {1.0, s[i + 1] - s[i]}, y, ay);
  }
  double worst = 0;
  for (ddm::index_t r = 0; r < 4; ++r) {
    double num = 0, den = 0;
    for (ddm::index_t c = 0; c < d; ++c) {
      num += y(r, c) * y(r, c);
      den += delta(r, c) * delta(r, c);
    }
    const double expect = std::sqrt(num / den);
    worst = std::max(worst, std::abs(result.amplification[static_cast<std::size_t>(r)] / expect - 1));
    EXPECT_NEAR(result.delta_norm[static_cast<std::size_t>(r)], std::sqrt(den), 1e-14);
  }
  std::printf("[ measured ] amplification vs ||M delta|| / ||delta||: max relative error %.2e\n", worst);
  EXPECT_LT(worst, 1e-12);
  // Linearity: epsilon does not matter.
  const auto small = dd::perturbation_amplification(ctx, f, x1.cview(), 1e-4, 3, s, ddm::euler{});
  const auto large = dd::perturbation_amplification(ctx, f, x1.cview(), 1.0, 3, s, ddm::euler{});
  for (std::size_t r = 0; r < 4; ++r) EXPECT_NEAR(small.amplification[r] / large.amplification[r], 1.0, 1e-9);
}

TEST(PerturbationAmplification, ContractingFlowShrinksPerturbations) {
  // The exact flow of Gaussian data N(m, s^2 I) maps x_1 to x_0 = m + s x_1 (gaussian_flow.hpp
  // from t = 1, where sigma = 1): every perturbation is scaled by s = 0.5.
  const ddm::test::gaussian_flow flow{{0.3, -0.2, 0.1, 0.0}, 0.5};
  const auto x1 = noise(3, 4, 12);
  const auto r = dd::perturbation_amplification(ctx, flow, x1.cview(), 1e-3, 5, ddm::schedules::uniform(200), ddm::heun{});
  for (double a : r.amplification) EXPECT_NEAR(a, 0.5, 1e-4);
  std::printf("[ measured ] Gaussian flow (s = 0.5), Heun 200 steps: amplification %.6f (exact 0.5)\n", r.amplification[0]);
}

// A field that moves nothing (v = 0) carries the perturbation through unchanged: A = 1. In float,
// a delta of 1e-6 on noise of size 1 changes its norm by up to 0.6% when added; the ratio must be
// taken over the perturbation the sampler actually started from, or A drifts from 1 by as much.
TEST(PerturbationAmplification, ZeroFieldGivesOneInFloatEvenForATinyDelta) {
  auto still = [](ddm::batch_view<const float>, double, ddm::batch_view<float> v) {
    ddm::fill(ddm::host_context{}, v, 0.0f);
  };
  ddm::batch<float> x1(6, 32);
  ddm::fill_normal(ctx, x1.view(), 21);
  const auto r = dd::perturbation_amplification(ctx, still, x1.cview(), 1e-6, 4, ddm::schedules::uniform(3), ddm::euler{});
  double worst = 0;
  for (double a : r.amplification) worst = std::max(worst, std::abs(a - 1.0));
  std::printf("[ measured ] zero field, float, epsilon 1e-6: max |A - 1| = %.2e\n", worst);
  EXPECT_LT(worst, 1e-12);
  // The reported norm is the applied one, near epsilon sqrt(D) but not equal to the requested one.
  for (double n : r.delta_norm) EXPECT_NEAR(n / (1e-6 * std::sqrt(32.0)), 1.0, 0.5);
}

TEST(PerturbationAmplification, ZeroPerturbationIsAnError) {
  const auto f = ddm::test::linear_field::random(3, 13);
  const auto x1 = noise(2, 3, 14);
  ddm::batch<double> delta(2, 3);
  delta(0, 0) = 1;  // row 1 stays 0
  try {
    (void)dd::perturbation_amplification(ctx, f, x1.cview(), delta.cview(), ddm::schedules::uniform(3), ddm::euler{});
    FAIL();
  } catch (const ddm::argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)dd::perturbation_amplification(ctx, f, x1.cview(), 0.0, 1, ddm::schedules::uniform(3), ddm::euler{}),
               ddm::argument_error);
}

// ---------------------------------------------------------------------------------------------
// Step refinement

TEST(StepRefinement, IsZeroForAFieldEulerIntegratesExactly) {
  // v = 0.5 everywhere: x_0 = x_1 - 0.5 for any schedule. With dyadic noise and dyadic steps
  // every operation is exact, so Delta is exactly 0; with Gaussian noise it is rounding only.
  auto constant = [](ddm::batch_view<const double>, double, ddm::batch_view<double> v) {
    ddm::fill(ddm::host_context{}, v, 0.5);
  };
  ddm::batch<double> dyadic(4, 3);
  for (ddm::index_t r = 0; r < 4; ++r)
    for (ddm::index_t c = 0; c < 3; ++c) dyadic(r, c) = static_cast<double>(r - 2 * c) / 4.0;
  const auto exact = dd::step_refinement(ctx, constant, dyadic.cview(), ddm::schedules::uniform(4), ddm::euler{});
  for (double v : exact.per_row) EXPECT_EQ(v, 0.0);
  EXPECT_EQ(exact.mean, 0.0);
  EXPECT_EQ(exact.field_evaluations, 4U + 8U);
  const auto x1 = noise(5, 6, 15);
  const auto rounding = dd::step_refinement(ctx, constant, x1.cview(), ddm::schedules::uniform(16), ddm::euler{});
  for (double v : rounding.per_row) EXPECT_LT(v, 1e-15);
}

TEST(StepRefinement, FallsAtTheIntegratorsOrder) {
  // Delta(N) ~ C N^-p: the ratio Delta(N) / Delta(2N) measures the order p.
  const ddm::test::gaussian_flow flow{{0.3, -0.2, 0.1}, 0.5};
  const auto x1 = noise(6, 3, 16);
  auto order = [&](const auto& integ, long n) {
    const auto a = dd::step_refinement(ctx, flow, x1.cview(), ddm::schedules::uniform(n), integ);
    const auto b = dd::step_refinement(ctx, flow, x1.cview(), ddm::schedules::uniform(2 * n), integ);
    return std::log2(a.mean / b.mean);
  };
  const double euler = order(ddm::euler{}, 32);
  const double heun = order(ddm::heun{}, 32);
  std::printf("[ measured ] Delta_refine order: euler %.3f, heun %.3f\n", euler, heun);
  EXPECT_NEAR(euler, 1.0, 0.1);
  EXPECT_NEAR(heun, 2.0, 0.2);
}

TEST(StepRefinement, NormalizerIsExplicitOrTheRmsOfTheFineSamples) {
  const ddm::test::gaussian_flow flow{{0.3, -0.2, 0.1}, 0.5};
  const auto x1 = noise(5, 3, 17);
  const auto coarse = ddm::schedules::uniform(6);
  const auto by_default = dd::step_refinement(ctx, flow, x1.cview(), coarse, ddm::euler{});
  const auto given = dd::step_refinement(ctx, flow, x1.cview(), coarse, ddm::euler{}, {.data_rms = 2.0});
  // The default normalizer is the RMS over all values of the fine (12-step) samples.
  auto fine = noise(5, 3, 17);
  ddm::sample(flow, fine, dd::refine(coarse), ddm::euler{});
  double sq = 0;
  for (ddm::index_t r = 0; r < 5; ++r)
    for (ddm::index_t c = 0; c < 3; ++c) sq += fine(r, c) * fine(r, c);
  EXPECT_NEAR(by_default.normalizer, std::sqrt(sq / 15), 1e-15);
  EXPECT_EQ(given.normalizer, 2.0);
  for (std::size_t r = 0; r < 5; ++r)
    EXPECT_NEAR(given.per_row[r] * 2.0, by_default.per_row[r] * by_default.normalizer, 1e-15);
  // An explicit fine schedule: the same as refine() when given refine().
  const auto explicit_fine = dd::step_refinement(ctx, flow, x1.cview(), coarse, dd::refine(coarse), ddm::euler{});
  EXPECT_EQ(explicit_fine.per_row, by_default.per_row);
  EXPECT_THROW((void)dd::step_refinement(ctx, flow, x1.cview(), coarse, ddm::schedules::uniform(12, 0.9), ddm::euler{}),
               ddm::schedule_error);
  EXPECT_THROW((void)dd::step_refinement(ctx, flow, x1.cview(), coarse, ddm::euler{}, {.data_rms = -1.0}),
               ddm::argument_error);
}

TEST(StepRefinement, RefineHalvesEveryStep) {
  const auto r = dd::refine(ddm::schedules::uniform(5));
  const auto u = ddm::schedules::uniform(10);
  ASSERT_EQ(r.steps(), 10U);
  for (std::size_t i = 0; i <= 10; ++i) EXPECT_NEAR(r[i], u[i], 1e-15);
  const auto k = ddm::schedules::karras(6);
  const auto rk = dd::refine(k);
  for (std::size_t i = 0; i < k.steps(); ++i) {
    EXPECT_EQ(rk[2 * i], k[i]);
    EXPECT_EQ(rk[2 * i + 1], 0.5 * (k[i] + k[i + 1]));
  }
}

}  // namespace
