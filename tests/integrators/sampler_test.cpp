// ddm::sampler keeps the stepper between runs: every run equals a fresh ddm::sample() bit for bit
// (history and step size are reset), and a run allocates nothing.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <tuple>

#include <ddm/ddm.hpp>

#include "support/counting_allocator.hpp"  // this binary's only includer
#include "support/gaussian_flow.hpp"

namespace {

const ddm::host_context ctx{};

ddm::test::gaussian_flow flow(ddm::index_t cols) {
  ddm::test::gaussian_flow f;
  f.s = 0.4;
  for (ddm::index_t c = 0; c < cols; ++c) f.m.push_back(0.3 * static_cast<double>(c) - 1.0);
  return f;
}

bool same_bits(const ddm::batch<double>& a, const ddm::batch<double>& b) {
  return std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(double)) == 0;
}

template <class Integrator>
void check_runs_equal_sample(const Integrator& integ) {
  const ddm::index_t rows = 5, cols = 7;
  const auto f = flow(cols);
  ddm::batch<double> noise(rows, cols), a(rows, cols), b(rows, cols);
  ddm::fill_normal(ctx, noise.view(), 3);
  ddm::sampler<Integrator, double> run(integ, rows, cols);
  // A first run leaves history (multistep) and a step size (adaptive) behind; the second run, on
  // a schedule that does not start at t = 1 (where a history point would be ignored anyway), must
  // not see them.
  ddm::copy(ctx, a.view(), noise);
  (void)run(f, a, ddm::schedules::uniform(6));
  const auto second = ddm::schedules::uniform(9, 0.9, 0.05);
  ddm::copy(ctx, a.view(), noise);
  const ddm::sample_result ra = run(f, a, second);
  ddm::copy(ctx, b.view(), noise);
  const ddm::sample_result rb = ddm::sample(f, b, second, integ);
  EXPECT_TRUE(same_bits(a, b)) << Integrator::name();
  EXPECT_EQ(ra.field_evaluations, rb.field_evaluations) << Integrator::name();
  EXPECT_EQ(ra.accepted_steps, rb.accepted_steps) << Integrator::name();
  EXPECT_EQ(ra.rejected_steps, rb.rejected_steps) << Integrator::name();
}

TEST(Sampler, EveryRunEqualsAFreshSample) {
  check_runs_equal_sample(ddm::euler{});
  check_runs_equal_sample(ddm::ddim{});
  check_runs_equal_sample(ddm::heun{});
  check_runs_equal_sample(ddm::dpmpp_2m{});
  check_runs_equal_sample(ddm::dpmpp_3m{});
  check_runs_equal_sample(ddm::dpmpp_2s{});
  check_runs_equal_sample(ddm::adaptive_bs32{});
  check_runs_equal_sample(ddm::adaptive_dopri5{});
}

TEST(Sampler, RunsAllocateNothing) {
  const ddm::index_t rows = 16, cols = 32;
  const auto f = flow(cols);
  ddm::batch<double> x(rows, cols);
  const auto schedule = ddm::schedules::uniform(12);
  ddm::sampler<ddm::dpmpp_3m, double> run3(ddm::dpmpp_3m{}, rows, cols);
  ddm::sampler<ddm::adaptive_bs32, double> run_adaptive(ddm::adaptive_bs32{}, rows, cols);
  const long before = ddm::test::allocations.load();
  for (int i = 0; i < 3; ++i) {
    ddm::fill_normal(ctx, x.view(), static_cast<std::uint64_t>(i));
    (void)run3(f, x, schedule);
    ddm::fill_normal(ctx, x.view(), static_cast<std::uint64_t>(i));
    (void)run_adaptive(f, x, schedule);
  }
  EXPECT_EQ(ddm::test::allocations.load() - before, 0);
  // sample() makes its stepper on every call.
  const long with_sample = ddm::test::allocations.load();
  (void)ddm::sample(f, x, schedule, ddm::dpmpp_3m{});
  EXPECT_GT(ddm::test::allocations.load() - with_sample, 0);
}

TEST(Sampler, ShapeIsChecked) {
  const auto f = flow(4);
  ddm::sampler<ddm::euler, double> run(ddm::euler{}, 3, 4);
  ddm::batch<double> x(2, 4);
  EXPECT_THROW((void)run(f, x, ddm::schedules::uniform(4)), ddm::shape_error);
  EXPECT_THROW((ddm::sampler<ddm::euler, double>(ddm::euler{}, 0, 4)), ddm::empty_batch_error);
}

}  // namespace
