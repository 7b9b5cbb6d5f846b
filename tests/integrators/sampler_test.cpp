// ddm::sampler keeps the stepper between runs: every run equals a fresh ddm::sample() bit for bit
// (history and step size are reset), and a run allocates nothing. ddm::sample() with a context
// whose scratch points to a ddm::workspace_pool keeps it too, with the same two properties, and
// lends a kept stepper to one call at a time (threads, a field that calls sample() itself,
// an exception that unwinds a call).

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <vector>

#include <ddm/ddm.hpp>

#include "support/counting_allocator.hpp"  // this binary's only includer
#include "support/gaussian_flow.hpp"
#include "support/same_bits.hpp"

namespace {

const ddm::host_context ctx{};

ddm::test::gaussian_flow flow(ddm::index_t cols) {
  ddm::test::gaussian_flow f;
  f.s = 0.4;
  for (ddm::index_t c = 0; c < cols; ++c) f.m.push_back(0.3 * static_cast<double>(c) - 1.0);
  return f;
}

bool same_bits(const ddm::batch<double>& a, const ddm::batch<double>& b) {
  return ddm::test::same_bits(a.cview(), b.cview());
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

// --- ddm::sample() with a workspace pool in its context ------------------------------------------

// Reads x_start, so that sample() also keeps its copy of x_i in the pool.
struct start_reader {
  static constexpr bool reads_step_start = true;
  double sum = 0;
  void operator()(const ddm::step_event<double>& e) { sum += e.x_start(0, 0); }
};

template <class Integrator>
void check_pooled_equals_fresh(const Integrator& integ) {
  const ddm::index_t rows = 5, cols = 7;
  const auto f = flow(cols);
  ddm::workspace_pool pool;
  const ddm::host_context pooled{.scratch = &pool};
  ddm::batch<double> noise(rows, cols), a(rows, cols), b(rows, cols);
  ddm::fill_normal(ctx, noise.view(), 3);
  // A first call leaves history and a step size in the kept stepper; the second, on a schedule
  // that does not start at t = 1, must not see them.
  ddm::copy(ctx, a.view(), noise);
  (void)ddm::sample(pooled, {}, f, a.view(), ddm::schedules::uniform(6), integ);
  const auto second = ddm::schedules::uniform(9, 0.9, 0.05);
  ddm::copy(ctx, a.view(), noise);
  start_reader ra_obs, rb_obs;
  const ddm::sample_result ra = ddm::sample(pooled, {}, f, a.view(), second, integ, ra_obs);
  ddm::copy(ctx, b.view(), noise);
  const ddm::sample_result rb = ddm::sample(f, b, second, integ, rb_obs);
  EXPECT_TRUE(same_bits(a, b)) << Integrator::name();
  EXPECT_EQ(ra_obs.sum, rb_obs.sum) << Integrator::name();
  EXPECT_EQ(ra.field_evaluations, rb.field_evaluations) << Integrator::name();
  EXPECT_EQ(ra.accepted_steps, rb.accepted_steps) << Integrator::name();
  EXPECT_EQ(ra.rejected_steps, rb.rejected_steps) << Integrator::name();
  EXPECT_EQ(pool.size(), 1U) << Integrator::name();
}

TEST(SampleWithWorkspace, EveryCallEqualsAFreshSample) {
  check_pooled_equals_fresh(ddm::euler{});
  check_pooled_equals_fresh(ddm::ddim{});
  check_pooled_equals_fresh(ddm::heun{});
  check_pooled_equals_fresh(ddm::dpmpp_2m{});
  check_pooled_equals_fresh(ddm::dpmpp_3m{});
  check_pooled_equals_fresh(ddm::dpmpp_2s{});
  check_pooled_equals_fresh(ddm::adaptive_bs32{});
  check_pooled_equals_fresh(ddm::adaptive_dopri5{});
}

TEST(SampleWithWorkspace, RepeatedCallsAllocateNothing) {
  const ddm::index_t rows = 16, cols = 32;
  const auto f = flow(cols);
  ddm::workspace_pool pool;
  const ddm::host_context pooled{.scratch = &pool};
  ddm::batch<double> x(rows, cols);
  const auto schedule = ddm::schedules::uniform(12);
  start_reader obs;
  auto calls = [&] {
    ddm::fill_normal(ctx, x.view(), 1);
    (void)ddm::sample(pooled, {}, f, x.view(), schedule, ddm::dpmpp_3m{});
    ddm::fill_normal(ctx, x.view(), 2);
    (void)ddm::sample(pooled, {}, f, x.view(), schedule, ddm::adaptive_bs32{}, obs);
  };
  calls();  // fills the pool
  const long before = ddm::test::allocations.load();
  for (int i = 0; i < 3; ++i) calls();
  EXPECT_EQ(ddm::test::allocations.load() - before, 0);
  EXPECT_EQ(pool.size(), 2U);
}

TEST(SampleWithWorkspace, KeepsOneStepperPerIntegratorContextAndShape) {
  const auto f = flow(4);
  ddm::workspace_pool pool;
  const ddm::host_context pooled{.scratch = &pool};
  const ddm::host_context pooled_threads{.threads = 2, .scratch = &pool};
  ddm::batch<double> x(3, 4), y(2, 4);
  ddm::batch<float> xf(3, 4);
  const auto s = ddm::schedules::uniform(4);
  const auto expect_size = [&](std::size_t n, const char* after) { EXPECT_EQ(pool.size(), n) << after; };
  (void)ddm::sample(pooled, {}, f, x.view(), s, ddm::dpmpp_3m{});
  (void)ddm::sample(pooled, {}, f, x.view(), s, ddm::dpmpp_3m{});
  expect_size(1, "the same call twice");
  (void)ddm::sample(pooled, {}, f, y.view(), s, ddm::dpmpp_3m{});
  expect_size(2, "another shape");
  (void)ddm::sample(pooled, {}, f, x.view(), s, ddm::dpmpp_3m{.reference_d2 = true});
  expect_size(3, "other integrator options");
  (void)ddm::sample(pooled_threads, {}, f, x.view(), s, ddm::dpmpp_3m{});
  expect_size(4, "another context");
  (void)ddm::sample(pooled, {}, f, xf.view(), s, ddm::dpmpp_3m{});
  expect_size(5, "another value type");
  (void)ddm::sample(pooled, {}, f, x.view(), s, ddm::euler{});
  expect_size(6, "another integrator");
  (void)ddm::sample(pooled, {}, f, y.view(), s, ddm::dpmpp_3m{});
  (void)ddm::sample(pooled, {}, f, x.view(), s, ddm::dpmpp_3m{.reference_d2 = true});
  expect_size(6, "calls that each match a kept stepper");
  pool.clear();
  expect_size(0, "clear()");
}

// A field that, on every call, samples a copy of x with the caller's context (and so the same
// pool, integrator and shape) before it returns the flow's velocity. The inner call must get a
// stepper of its own: were it lent the outer call's, it would overwrite the outer DPM-Solver++
// history and the outer result would change.
struct reentrant_field {
  ddm::test::gaussian_flow f;
  ddm::host_context inner_ctx;
  ddm::batch<double>* inner;
  double inner_sum = 0;
  void operator()(ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) {
    ddm::copy(ctx, inner->view(), x);
    (void)ddm::sample(inner_ctx, {}, f, inner->view(), ddm::schedules::uniform(3, t, 0.0), ddm::dpmpp_2m{});
    inner_sum += (*inner)(0, 0);
    f(x, t, v);
  }
};

TEST(SampleWithWorkspace, AFieldThatSamplesWithTheSameContextGetsItsOwnStepper) {
  const ddm::index_t rows = 4, cols = 6;
  ddm::workspace_pool pool;
  const ddm::host_context pooled{.scratch = &pool};
  ddm::batch<double> noise(rows, cols), a(rows, cols), b(rows, cols), inner(rows, cols);
  ddm::fill_normal(ctx, noise.view(), 11);
  const auto s = ddm::schedules::uniform(7);
  reentrant_field with_pool{flow(cols), pooled, &inner};
  reentrant_field without{flow(cols), ctx, &inner};
  for (int call = 0; call < 2; ++call) {
    ddm::copy(ctx, a.view(), noise);
    (void)ddm::sample(pooled, {}, with_pool, a.view(), s, ddm::dpmpp_2m{});
    ddm::copy(ctx, b.view(), noise);
    (void)ddm::sample(ctx, {}, without, b.view(), s, ddm::dpmpp_2m{});
    EXPECT_TRUE(same_bits(a, b)) << "call " << call;
    EXPECT_EQ(with_pool.inner_sum, without.inner_sum) << "call " << call;
  }
  EXPECT_EQ(pool.size(), 2U);  // the outer and the inner stepper, both lent at once
}

TEST(SampleWithWorkspace, ThreadsSharingOnePoolGetStepperOfTheirOwn) {
  const ddm::index_t rows = 8, cols = 16;
  const auto f = flow(cols);
  const auto s = ddm::schedules::uniform(10);
  constexpr int threads = 4, calls = 25;
  std::vector<ddm::batch<double>> expected;
  for (int i = 0; i < threads; ++i) {
    expected.emplace_back(rows, cols);
    ddm::fill_normal(ctx, expected.back().view(), static_cast<std::uint64_t>(100 + i));
    (void)ddm::sample(f, expected.back(), s, ddm::dpmpp_3m{});
  }
  ddm::workspace_pool pool;
  const ddm::host_context pooled{.scratch = &pool};
  std::vector<int> mismatches(threads, 0);
  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i)
    workers.emplace_back([&, i] {
      ddm::batch<double> x(rows, cols);
      for (int c = 0; c < calls; ++c) {
        ddm::fill_normal(ctx, x.view(), static_cast<std::uint64_t>(100 + i));
        (void)ddm::sample(pooled, {}, f, x.view(), s, ddm::dpmpp_3m{});
        if (!same_bits(x, expected[static_cast<std::size_t>(i)])) ++mismatches[static_cast<std::size_t>(i)];
      }
    });
  for (auto& w : workers) w.join();
  for (int i = 0; i < threads; ++i) EXPECT_EQ(mismatches[static_cast<std::size_t>(i)], 0) << "thread " << i;
  EXPECT_GE(pool.size(), 1U);
  EXPECT_LE(pool.size(), static_cast<std::size_t>(threads));
}

TEST(SampleWithWorkspace, AnExceptionHandsTheStepperBack) {
  const ddm::index_t rows = 3, cols = 5;
  const auto f = flow(cols);
  ddm::workspace_pool pool;
  const ddm::host_context pooled{.scratch = &pool};
  int calls_left = 4;
  auto failing = [&](ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) {
    if (--calls_left < 0) throw std::runtime_error("field failed");
    f(x, t, v);
  };
  ddm::batch<double> noise(rows, cols), a(rows, cols), b(rows, cols);
  ddm::fill_normal(ctx, noise.view(), 5);
  const auto s = ddm::schedules::uniform(8);
  ddm::copy(ctx, a.view(), noise);
  EXPECT_THROW((void)ddm::sample(pooled, {}, failing, a.view(), s, ddm::dpmpp_2m{}), std::runtime_error);
  ddm::copy(ctx, a.view(), noise);
  (void)ddm::sample(pooled, {}, f, a.view(), s, ddm::dpmpp_2m{});
  ddm::copy(ctx, b.view(), noise);
  (void)ddm::sample(f, b, s, ddm::dpmpp_2m{});
  EXPECT_TRUE(same_bits(a, b));
  EXPECT_EQ(pool.size(), 1U);  // the stepper the failed call held was handed back and reused
}

}  // namespace
