// Every integrator runs unchanged on device views: sample() compiles with a device field for each
// of them, its measured order of convergence on device equals its order on the host, and whole
// runs on device agree with the host's, step by step.
//
// The device field is the closed-form Gaussian flow of support/gaussian_flow.hpp, computed
// by a small kernel with the same expression (in double) as the host field.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include <ddm/cuda.hpp>

#include "support/cuda_support.hpp"
#include "support/gaussian_flow.hpp"

namespace {

using ddm::batch;
using ddm::batch_view;
using ddm::cuda_space;
using ddm::index_t;
using ddm::test::gaussian_flow;

const ddm::host_context host{};

template <class T>
__global__ void gaussian_velocity_kernel(const T* x, index_t sx, T* v, index_t sv, const double* m, index_t rows,
                                         index_t cols, double a, double b) {
  const index_t c = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  for (index_t r = blockIdx.y; r < rows; r += gridDim.y)
    if (c < cols) v[r * sv + c] = static_cast<T>(a * static_cast<double>(x[r * sx + c]) - b * m[c]);
}

// The Gaussian flow as a device velocity field. Its kernels go to the stream of the context it
// was built with, which is the sampler's: a field must order its work with the integrator's.
struct device_gaussian_flow {
  gaussian_flow host;                     // the same flow on the host: reference runs, exact solutions
  ddm::cuda_context ctx;
  batch<double, cuda_space> mean;         // (1, D)

  device_gaussian_flow(gaussian_flow f, const ddm::cuda_context& c)
      : host(std::move(f)),
        ctx(c),
        mean(ddm::cuda::to_device(ctx, batch_view<const double>(host.m.data(), 1, static_cast<index_t>(host.m.size())))) {}

  template <class T>
  void operator()(batch_view<const T, cuda_space> x, double t, batch_view<T, cuda_space> v) const {
    const double s = host.s;
    const double var = (1 - t) * (1 - t) * s * s + t * t;
    const double a = (t - (1 - t) * s * s) / var;
    const double b = t / var;
    const dim3 grid(static_cast<unsigned>((x.cols() + 127) / 128), static_cast<unsigned>(std::min<index_t>(x.rows(), 65535)));
    gaussian_velocity_kernel<T><<<grid, 128, 0, ctx.stream()>>>(x.data(), x.stride(), v.data(), v.stride(), mean.data(),
                                                                x.rows(), x.cols(), a, b);
    ddm::cuda::check_launch("gaussian_velocity_kernel");
  }
};

// ---------------------------------------------------------------------------------------------
// Orders of convergence, as in tests/integrators/convergence_test.cpp, on both sides.

template <class Integrator>
double sup_error(const Integrator& integ, const device_gaussian_flow& f, long steps, bool on_device) {
  const double t_a = 0.999;
  const double t_b = 1e-3;
  batch<double> z(8, 4);
  ddm::fill_normal(host, z.view(), 3);
  batch<double> x(8, 4);
  f.host.exact(z.cview(), 1.0, t_a, x.view());
  batch<double> exact(8, 4);
  double worst = 0;
  auto compare = [&](batch_view<const double> state, double t) {
    f.host.exact(z.cview(), 1.0, t, exact.view());
    worst = std::max(worst, ddm::test::max_abs_diff(state, exact.cview()));
  };
  const auto schedule = ddm::schedules::uniform_lambda(steps, t_a, t_b, false);
  if (on_device) {
    auto xd = ddm::cuda::to_device(f.ctx, x);
    ddm::sample(f.ctx, ddm::sample_options{}, f, xd.view(), schedule, integ,
                [&](const ddm::step_event<double, cuda_space>& e) {
                  compare(ddm::cuda::to_host(f.ctx, e.x).cview(), e.t_next);
                });
  } else {
    ddm::sample(f.host, x, schedule, integ, [&](const ddm::step_event<double>& e) { compare(e.x, e.t_next); });
  }
  return worst;
}

// Least-squares slope of -log(error) against log(steps).
template <class Integrator>
double measured_order(const Integrator& integ, const device_gaussian_flow& f, bool on_device) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  const std::vector<long> steps{32, 64, 128, 256};
  for (long n : steps) {
    const double lx = std::log(static_cast<double>(n));
    const double ly = std::log(sup_error(integ, f, n, on_device));
    sx += lx;
    sy += ly;
    sxx += lx * lx;
    sxy += lx * ly;
  }
  const auto k = static_cast<double>(steps.size());
  return -(k * sxy - sx * sy) / (k * sxx - sx * sx);
}

// The device run differs from the host run by roundings of double (1e-16), far below the errors
// being measured (1e-9 and up), so the two measured orders agree to much better than 1e-3.
template <class Integrator>
void expect_order_on_device(const char* name, const Integrator& integ, double expected) {
  const ddm::cuda_context ctx;
  for (double s : {0.3, 0.8}) {
    const device_gaussian_flow f(gaussian_flow{{0.7, -0.3, 0.2, 1.0}, s}, ctx);
    const double p_device = measured_order(integ, f, true);
    const double p_host = measured_order(integ, f, false);
    std::printf("[ measured ] %-8s s = %.1f: order %.4f on device, %.4f on the host (expected %.0f)\n", name, s,
                p_device, p_host, expected);
    EXPECT_NEAR(p_device, expected, 0.25) << name << " with data scale s = " << s;
    EXPECT_NEAR(p_device, p_host, 1e-3) << name << " with data scale s = " << s;
  }
}

TEST(DeviceConvergence, EulerIsFirstOrder) {
  DDM_TEST_REQUIRE_GPU();
  expect_order_on_device("euler", ddm::euler{}, 1);
}
TEST(DeviceConvergence, DdimIsFirstOrder) {
  DDM_TEST_REQUIRE_GPU();
  expect_order_on_device("ddim", ddm::ddim{}, 1);
}
TEST(DeviceConvergence, DpmSolver1IsFirstOrder) {
  DDM_TEST_REQUIRE_GPU();
  expect_order_on_device("dpm++1", ddm::dpmpp_1{}, 1);
}
TEST(DeviceConvergence, HeunIsSecondOrder) {
  DDM_TEST_REQUIRE_GPU();
  expect_order_on_device("heun", ddm::heun{}, 2);
}
TEST(DeviceConvergence, DpmSolver2MIsSecondOrder) {
  DDM_TEST_REQUIRE_GPU();
  expect_order_on_device("dpm++2m", ddm::dpmpp_2m{}, 2);
}
TEST(DeviceConvergence, DpmSolver2SIsSecondOrder) {
  DDM_TEST_REQUIRE_GPU();
  expect_order_on_device("dpm++2s", ddm::dpmpp_2s{}, 2);
}
TEST(DeviceConvergence, DpmSolver3MIsThirdOrder) {
  DDM_TEST_REQUIRE_GPU();
  expect_order_on_device("dpm++3m", ddm::dpmpp_3m{}, 3);
}

// ---------------------------------------------------------------------------------------------
// Whole runs in float: device against host, at every step.

gaussian_flow wide_flow(index_t cols) {
  gaussian_flow f;
  f.s = 0.5;
  for (index_t c = 0; c < cols; ++c) f.m.push_back(std::sin(0.37 * static_cast<double>(c)) + 0.2);
  return f;
}

// The per-step differences are a few roundings of float in each update and the flow contracts
// (sigma(0)/sigma(1) = s = 0.5), so over a run they stay within 1e-5 of max |x|.
template <class Integrator>
void expect_run_matches_host(const char* name, const Integrator& integ, const ddm::time_schedule& schedule) {
  constexpr index_t rows = 64;
  constexpr index_t cols = 300;
  const ddm::cuda::stream stream;
  const ddm::cuda_context ctx = stream.context();
  const device_gaussian_flow f(wide_flow(cols), ctx);
  batch<float> x(rows, cols);
  ddm::fill_normal(host, x.view(), 7);

  // The device state is a strided view whose padding holds NaN: reading outside the view would
  // show. It starts from the host's noise exactly.
  auto xd = ddm::test::on_device<float>(ctx, x, 20);

  std::vector<batch<float>> trajectory;
  const auto host_result = ddm::sample(f.host, x, schedule, integ, [&](const ddm::step_event<float>& e) {
    batch<float> copy(rows, cols);
    ddm::copy(host, copy.view(), e.x);
    trajectory.push_back(std::move(copy));
  });

  double worst = 0;
  std::size_t observed = 0;
  const auto device_result = ddm::sample(
      ctx, ddm::sample_options{.check_finite = true}, f, xd.view, schedule, integ,
      [&](const ddm::step_event<float, cuda_space>& e) {
        const auto got = ddm::cuda::to_host(ctx, e.x);
        const auto& expect = trajectory.at(e.index);
        double scale = 1;
        for (index_t r = 0; r < rows; ++r)
          for (index_t c = 0; c < cols; ++c) scale = std::max(scale, std::abs(static_cast<double>(expect(r, c))));
        worst = std::max(worst, ddm::test::max_abs_diff(got.cview(), expect.cview()) / scale);
        ++observed;
      });
  std::printf("[ measured ] %-8s %zu steps, %zu evaluations: max |device - host| / max(1, |x|) = %.2e\n", name,
              device_result.steps, device_result.field_evaluations, worst);
  EXPECT_EQ(observed, trajectory.size()) << name;
  EXPECT_EQ(device_result.steps, host_result.steps) << name;
  EXPECT_EQ(device_result.field_evaluations, host_result.field_evaluations) << name;
  EXPECT_EQ(device_result.accepted_steps, host_result.accepted_steps) << name;
  EXPECT_EQ(device_result.rejected_steps, host_result.rejected_steps) << name;
  EXPECT_LE(worst, 1e-5) << name;
}

TEST(DeviceRuns, EveryIntegratorMatchesTheHostStepByStep) {
  DDM_TEST_REQUIRE_GPU();
  // From pure noise (t = 1) into data (t = 0): the endpoint branches of every method run.
  const auto schedule = ddm::schedules::uniform(20);
  expect_run_matches_host("euler", ddm::euler{}, schedule);
  expect_run_matches_host("ddim", ddm::ddim{}, schedule);
  expect_run_matches_host("heun", ddm::heun{}, schedule);
  expect_run_matches_host("dpm++1", ddm::dpmpp_1{}, schedule);
  expect_run_matches_host("dpm++2m", ddm::dpmpp_2m{}, schedule);
  expect_run_matches_host("dpm++2s", ddm::dpmpp_2s{}, schedule);
  expect_run_matches_host("dpm++3m", ddm::dpmpp_3m{}, schedule);
  expect_run_matches_host("bs32", ddm::adaptive_bs32{}, ddm::schedules::uniform(4));
  expect_run_matches_host("dopri5", ddm::adaptive_dopri5{}, ddm::schedules::uniform(4));
}

// sample(check_finite) on device: the first NaN velocity raises non_finite_error naming the step,
// and x is left as it was after the previous step.
TEST(DeviceRuns, ANonFiniteVelocityIsCaughtWithTheStateOfThePreviousStep) {
  DDM_TEST_REQUIRE_GPU();
  const ddm::cuda_context ctx;
  const device_gaussian_flow f(wide_flow(50), ctx);
  auto failing = [&](batch_view<const float, cuda_space> x, double t, batch_view<float, cuda_space> v) {
    f(x, t, v);
    if (t < 0.45) ddm::fill(ctx, v.subrows(3, 1), std::numeric_limits<float>::quiet_NaN());
  };
  batch<float, cuda_space> x(ctx, 8, 50);
  ddm::fill_normal(ctx, x.view(), 5);
  batch<float> before(8, 50);
  auto keep = [&](const ddm::step_event<float, cuda_space>& e) { ddm::copy(ctx, before.view(), e.x); };
  try {
    ddm::sample(ctx, ddm::sample_options{.check_finite = true}, failing, x.view(), ddm::schedules::uniform(10),
                ddm::dpmpp_2m{}, keep);
    FAIL() << "no non_finite_error";
  } catch (const ddm::non_finite_error& e) {
    EXPECT_EQ(e.step(), 6);  // t = 0.4 is the first time below 0.45
    EXPECT_NEAR(e.time(), 0.4, 1e-12);
  }
  const auto after = ddm::cuda::to_host(ctx, x);
  EXPECT_EQ(ddm::test::max_abs_diff(after.cview(), before.cview()), 0.0);
}

}  // namespace
