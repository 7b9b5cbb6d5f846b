// Measured orders of convergence on the closed-form Gaussian flow.
//
// The error of a run is the largest deviation from the exact trajectory over all schedule points
// (the sup norm in time). The schedule is uniform in lambda = log((1 - t)/t), the natural
// variable of the exponential integrators, between t = 0.999 and t = 1e-3. Measuring only at the
// last point would under-report nothing but can over-report: on an interval that spans the whole
// transition of this flow, the leading error term of 3M integrates to almost zero at the end
// point and the end error converges at order 4.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include <ddm/ddm.hpp>

#include "support/gaussian_flow.hpp"

namespace {

using ddm::test::gaussian_flow;

// The grids of the measurements: uniform in lambda (the default) or uniform in t, both from
// t = 0.999 to 1e-3.
enum class grid { lambda, t };

template <class Integrator>
double sup_error(const Integrator& integ, const gaussian_flow& f, long steps, grid g = grid::lambda) {
  const double t_a = 0.999;
  const double t_b = 1e-3;
  ddm::batch<double> z(8, 4);
  ddm::fill_normal(ddm::host_context{}, z.view(), 3);
  ddm::batch<double> x(8, 4);
  f.exact(z.cview(), 1.0, t_a, x.view());
  ddm::batch<double> exact(8, 4);
  double worst = 0;
  auto track = [&](const ddm::step_event<double>& e) {
    f.exact(z.cview(), 1.0, e.t_next, exact.view());
    worst = std::max(worst, ddm::test::max_abs_diff(e.x, exact.cview()));
  };
  const auto schedule = g == grid::lambda ? ddm::schedules::uniform_lambda(steps, t_a, t_b, false)
                                          : ddm::schedules::uniform(steps, t_a, t_b);
  ddm::sample(f, x, schedule, integ, track);
  return worst;
}

// Least-squares slope of -log(error) against log(steps).
template <class Integrator>
double measured_order(const Integrator& integ, double s, const std::vector<long>& steps = {32, 64, 128, 256},
                      grid g = grid::lambda) {
  const gaussian_flow f{{0.7, -0.3, 0.2, 1.0}, s};
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (long n : steps) {
    const double lx = std::log(static_cast<double>(n));
    const double ly = std::log(sup_error(integ, f, n, g));
    sx += lx;
    sy += ly;
    sxx += lx * lx;
    sxy += lx * ly;
  }
  const auto k = static_cast<double>(steps.size());
  return -(k * sxy - sx * sy) / (k * sxx - sx * sx);
}

template <class Integrator>
void expect_order(const char* name, const Integrator& integ, double expected,
                  const std::vector<long>& steps = {32, 64, 128, 256}) {
  for (double s : {0.3, 0.8}) {
    const double p = measured_order(integ, s, steps);
    std::printf("[ measured ] %-8s s = %.1f: order %.3f (expected %.0f)\n", name, s, p, expected);
    EXPECT_NEAR(p, expected, 0.25) << name << " with data scale s = " << s;
  }
}

TEST(Convergence, EulerIsFirstOrder) { expect_order("euler", ddm::euler{}, 1); }
TEST(Convergence, DdimIsFirstOrder) { expect_order("ddim", ddm::ddim{}, 1); }
TEST(Convergence, DpmSolver1IsFirstOrder) { expect_order("dpm++1", ddm::dpmpp_1{}, 1); }
TEST(Convergence, HeunIsSecondOrder) { expect_order("heun", ddm::heun{}, 2); }
TEST(Convergence, DpmSolver2MIsSecondOrder) { expect_order("dpm++2m", ddm::dpmpp_2m{}, 2); }
TEST(Convergence, DpmSolver2SIsSecondOrder) { expect_order("dpm++2s", ddm::dpmpp_2s{}, 2); }
TEST(Convergence, DpmSolver3MIsThirdOrder) { expect_order("dpm++3m", ddm::dpmpp_3m{}, 3); }

// 3M's third order is an order in h = the lambda step. On a grid uniform in t the lambda steps
// near t = 1e-3 are long (dlambda/dt = -1/(t(1 - t))), so at the step counts samplers use the
// error is far larger than on the uniform-lambda grid and its measured order falls short of 3; it
// approaches 3 only past about 512 steps (docs/integrators.md quotes these measurements).
TEST(Convergence, DpmSolver3MReachesThirdOrderOnUniformLambdaNotUniformTGrids) {
  for (double s : {0.3, 0.8}) {
    const gaussian_flow f{{0.7, -0.3, 0.2, 1.0}, s};
    const double p_lambda = measured_order(ddm::dpmpp_3m{}, s, {32, 64, 128, 256}, grid::lambda);
    const double p_t = measured_order(ddm::dpmpp_3m{}, s, {32, 64, 128, 256}, grid::t);
    std::printf("[ measured ] dpm++3m s = %.1f, 32..256 steps: order %.3f on uniform lambda, %.3f on uniform t\n", s,
                p_lambda, p_t);
    EXPECT_NEAR(p_lambda, 3.0, 0.25);
    EXPECT_LT(p_t, 2.9) << "s = " << s;
    for (long n : {32L, 256L}) {
      const double e_lambda = sup_error(ddm::dpmpp_3m{}, f, n, grid::lambda);
      const double e_t = sup_error(ddm::dpmpp_3m{}, f, n, grid::t);
      std::printf("[ measured ] dpm++3m s = %.1f, %ld steps: error %.2e on uniform lambda, %.2e on uniform t\n", s, n,
                  e_lambda, e_t);
      EXPECT_GT(e_t, e_lambda) << "s = " << s << ", " << n << " steps";
    }
  }
}

// The reference codes' 3M (D2 at half its Taylor value) is second order: see dpm_solver.hpp.
TEST(Convergence, ReferenceCodes3MIsOnlySecondOrder) {
  ddm::dpmpp_3m reference;
  reference.reference_d2 = true;
  // Its third-order term is wrong only by a constant, so second order shows at finer steps.
  expect_order("3m-ref", reference, 2, {512, 1024, 2048, 4096});
}

// Over the whole range, from pure noise to data, every integrator stays finite (t = 1 and
// t = 0 are handled) and lands near the exact endpoint.
TEST(Convergence, FullRangeFromNoiseToDataIsHandledByEveryIntegrator) {
  const gaussian_flow f{{0.7, -0.3, 0.2, 1.0}, 0.5};
  ddm::batch<double> z(8, 4);
  ddm::fill_normal(ddm::host_context{}, z.view(), 11);
  ddm::batch<double> exact(8, 4);
  f.exact(z.cview(), 1.0, 0.0, exact.view());
  auto run = [&](const auto& integ, long steps) {
    ddm::batch<double> x(8, 4);
    ddm::copy(ddm::host_context{}, x.view(), z);
    ddm::sample(ddm::sample_options{.check_finite = true}, f, x, ddm::schedules::uniform(steps), integ);
    return ddm::test::max_abs_diff(x.cview(), exact.cview());
  };
  EXPECT_LT(run(ddm::euler{}, 100), 2e-2);
  EXPECT_LT(run(ddm::heun{}, 100), 5e-3);
  EXPECT_LT(run(ddm::dpmpp_2m{}, 100), 5e-3);
  EXPECT_LT(run(ddm::dpmpp_2s{}, 100), 5e-3);
  EXPECT_LT(run(ddm::dpmpp_3m{}, 100), 5e-3);
  EXPECT_LT(run(ddm::adaptive_bs32{}, 1), 2e-3);
}

// The adaptive pairs meet their tolerance: the error at t = 0 stays within a small multiple of
// the tolerance and falls with it.
TEST(Convergence, AdaptivePairsMeetTheirTolerance) {
  const gaussian_flow f{{0.7, -0.3, 0.2, 1.0}, 0.5};
  ddm::batch<double> z(8, 4);
  ddm::fill_normal(ddm::host_context{}, z.view(), 5);
  ddm::batch<double> exact(8, 4);
  f.exact(z.cview(), 1.0, 0.0, exact.view());
  auto run = [&](auto integ, double tol) {
    integ.rtol = tol;
    integ.atol = tol;
    ddm::batch<double> x(8, 4);
    ddm::copy(ddm::host_context{}, x.view(), z);
    const auto r = ddm::sample(f, x, ddm::time_schedule({1.0, 0.0}), integ);
    const double err = ddm::test::max_abs_diff(x.cview(), exact.cview());
    std::printf("[ measured ] %-6s tol %.0e: error %.2e, %zu accepted, %zu rejected, %zu evaluations\n", integ.name(),
                tol, err, r.accepted_steps, r.rejected_steps, r.field_evaluations);
    EXPECT_GT(r.accepted_steps, 0U);
    EXPECT_EQ(r.steps, 1U);
    return err;
  };
  for (double tol : {1e-4, 1e-5, 1e-6, 1e-7, 1e-8}) {
    EXPECT_LT(run(ddm::adaptive_bs32{}, tol), 10 * tol);
    EXPECT_LT(run(ddm::adaptive_dopri5{}, tol), 10 * tol);
  }
  EXPECT_LT(run(ddm::adaptive_bs32{}, 1e-7), run(ddm::adaptive_bs32{}, 1e-4));
}

}  // namespace
