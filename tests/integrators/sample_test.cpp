// The sample() driver: observers, options, errors.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <ddm/ddm.hpp>

#include "support/gaussian_flow.hpp"

namespace {

const ddm::host_context ctx{};
const ddm::test::gaussian_flow flow{{0.7, -0.3, 0.2}, 0.5};

ddm::batch<double> start() {
  ddm::batch<double> x(6, 3);
  ddm::fill_normal(ctx, x.view(), 23);
  return x;
}

bool bit_identical(const ddm::batch<double>& a, const ddm::batch<double>& b) {
  return std::memcmp(a.data(), b.data(), sizeof(double) * static_cast<std::size_t>(a.size())) == 0;
}

struct recorder {
  std::vector<std::size_t> index;
  std::vector<double> t, t_next;
  int starts = 0, finishes = 0;
  void on_start(ddm::batch_view<const double> /*x*/, double t0) {
    ++starts;
    EXPECT_EQ(t0, 1.0);
  }
  void on_finish(ddm::batch_view<const double> /*x*/, double t1) {
    ++finishes;
    EXPECT_EQ(t1, 0.0);
  }
  void operator()(const ddm::step_event<double>& e) {
    index.push_back(e.index);
    t.push_back(e.t);
    t_next.push_back(e.t_next);
  }
};

TEST(Sample, ObserversSeeEveryStepOnceInOrder) {
  auto x = start();
  recorder rec;
  const auto s = ddm::schedules::uniform(5);
  const auto result = ddm::sample(flow, x, s, ddm::heun{}, rec);
  ASSERT_EQ(rec.index.size(), 5U);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(rec.index[i], i);
    EXPECT_EQ(rec.t[i], s[i]);
    EXPECT_EQ(rec.t_next[i], s[i + 1]);
  }
  EXPECT_EQ(rec.starts, 1);
  EXPECT_EQ(rec.finishes, 1);
  EXPECT_EQ(result.steps, 5U);
  EXPECT_EQ(result.field_evaluations, 9U);
  EXPECT_EQ(result.accepted_steps, 5U);
}

TEST(Sample, EventCarriesTheStateAfterAndTheVelocityAtTheStart) {
  auto x = start();
  auto previous = start();
  ddm::batch<double> v(6, 3);
  auto check = [&](const ddm::step_event<double>& e) {
    flow(previous.cview(), e.t, v.view());
    EXPECT_EQ(ddm::test::max_abs_diff(e.v, v.cview()), 0.0);
    ddm::copy(ctx, previous.view(), e.x);
  };
  ddm::sample(flow, x, ddm::schedules::uniform(4), ddm::dpmpp_2m{}, check);
  EXPECT_EQ(ddm::test::max_abs_diff(previous.cview(), x.cview()), 0.0);
}

// An observer that reads the state at the start of each step, and checks it is x_i: the
// previous event's x (x_0 for the first), the point the step's velocity was evaluated at.
struct start_reader {
  static constexpr bool reads_step_start = true;
  ddm::batch<double> previous{6, 3};
  ddm::batch<double> v{6, 3};
  double worst = 0.0;
  std::size_t events = 0;
  void on_start(ddm::batch_view<const double> x, double) { ddm::copy(ctx, previous.view(), x); }
  void operator()(const ddm::step_event<double>& e) {
    ++events;
    worst = std::max(worst, ddm::test::max_abs_diff(e.x_start, previous.cview()));
    flow(e.x_start, e.t, v.view());
    worst = std::max(worst, ddm::test::max_abs_diff(e.v, v.cview()));
    ddm::copy(ctx, previous.view(), e.x);
  }
};

TEST(Sample, ObserversThatReadTheStepStartGetXiAndOthersPayNoCopy) {
  static_assert(ddm::reads_step_start<start_reader>);
  static_assert(!ddm::reads_step_start<recorder>);
  for (int method = 0; method < 3; ++method) {
    auto x = start();
    start_reader reader;
    std::size_t empty_starts = 0;
    auto plain = [&](const ddm::step_event<double>& e) { empty_starts += e.x_start.empty() ? 1 : 0; };
    const auto s = ddm::schedules::uniform(5);
    if (method == 0) ddm::sample(flow, x, s, ddm::euler{}, reader, plain);
    if (method == 1) ddm::sample(flow, x, s, ddm::heun{}, plain, reader);
    if (method == 2) {
      ddm::sampler<ddm::dpmpp_2m, double> run(ddm::dpmpp_2m{}, 6, 3);
      run(flow, x, s, reader, plain);
      run(flow, x, s, reader, plain);  // the kept copy serves the second run too
    }
    EXPECT_EQ(reader.events, method == 2 ? 10U : 5U);
    EXPECT_EQ(reader.worst, 0.0) << "method " << method;
    EXPECT_EQ(empty_starts, 0U) << "one copy per step, shared by every observer of the run";
  }
  std::size_t empty_starts = 0;
  auto x = start();
  ddm::sample(flow, x, ddm::schedules::uniform(3), ddm::euler{},
              [&](const ddm::step_event<double>& e) { empty_starts += e.x_start.empty() ? 1 : 0; });
  EXPECT_EQ(empty_starts, 3U) << "no observer reads x_start: no copy, an empty view";
}

TEST(Sample, ObserversLeaveTheTrajectoryBitIdentical) {
  auto plain = start();
  auto watched = start();
  ddm::sample(flow, plain, ddm::schedules::uniform(7), ddm::dpmpp_3m{});
  recorder rec;
  double sum = 0;
  ddm::sample(flow, watched, ddm::schedules::uniform(7), ddm::dpmpp_3m{}, rec,
              [&](const ddm::step_event<double>& e) { sum += e.x(0, 0); });
  EXPECT_TRUE(bit_identical(plain, watched));
}

TEST(Sample, NonFiniteVelocityIsReportedWithStepAndTimeAndStateIsKept) {
  const auto s = ddm::schedules::uniform(6);
  int calls = 0;
  auto poisoned = [&](ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) {
    flow(x, t, v);
    if (++calls == 6) v(2, 1) = std::numeric_limits<double>::quiet_NaN();  // Heun: 2nd evaluation of step 2
  };
  auto x = start();
  try {
    ddm::sample(ddm::sample_options{.check_finite = true}, poisoned, x, s, ddm::heun{});
    FAIL() << "no error";
  } catch (const ddm::non_finite_error& e) {
    EXPECT_EQ(e.step(), 2);
    EXPECT_DOUBLE_EQ(e.time(), s[3]);
    EXPECT_NE(std::string(e.what()).find("step 2"), std::string::npos) << e.what();
  }
  // x is the state after two steps.
  auto expect = start();
  ddm::sample(flow, expect, ddm::time_schedule({s[0], s[1], s[2]}), ddm::heun{});
  EXPECT_TRUE(bit_identical(x, expect));
}

TEST(Sample, BadArgumentsAreErrors) {
  ddm::batch<double> empty(0, 3);
  try {
    ddm::sample(flow, empty, ddm::schedules::uniform(3), ddm::euler{});
    FAIL();
  } catch (const ddm::empty_batch_error& e) {
    EXPECT_STREQ(e.what(), "ddm::sample: argument 'x' is an empty batch of shape (0, 3), expected at least one row "
                           "and one column");
  }
  auto x = start();
  auto st = ddm::euler{}.make_stepper<double>(ctx, 2, 3);
  ddm::test::gaussian_flow f = flow;
  EXPECT_THROW(st.step(f, x.view(), 1.0, 0.5), ddm::shape_error);
  ddm::adaptive_bs32 bad;
  bad.rtol = -1;
  EXPECT_THROW(ddm::sample(flow, x, ddm::schedules::uniform(2), bad), ddm::argument_error);
  auto dpm = ddm::dpmpp_2m{}.make_stepper<double>(ctx, 6, 3);
  EXPECT_THROW(dpm.step(f, x.view(), 0.5, 0.7), ddm::schedule_error);
}

// A stepper called directly (not through sample(), whose schedules are validated) refuses a step
// that does not go down in time inside [0, 1], and leaves x untouched.
template <class Integrator>
void expect_bad_step_times_refused(const char* name) {
  auto x = start();
  std::vector<double> before;
  for (ddm::index_t r = 0; r < x.rows(); ++r)
    for (ddm::index_t c = 0; c < x.cols(); ++c) before.push_back(x(r, c));
  auto st = Integrator{}.template make_stepper<double>(ctx, x.rows(), x.cols());
  ddm::test::gaussian_flow f = flow;
  for (const auto& [t, t_next] : {std::pair{0.5, 0.7}, {0.5, 0.5}, {1.5, 0.5}, {0.5, -0.1}}) {
    try {
      st.step(f, x.view(), t, t_next);
      ADD_FAILURE() << name << ": step from " << t << " to " << t_next << " was accepted";
    } catch (const ddm::schedule_error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
  std::size_t i = 0;
  for (ddm::index_t r = 0; r < x.rows(); ++r)
    for (ddm::index_t c = 0; c < x.cols(); ++c) EXPECT_EQ(x(r, c), before[i++]);
}

TEST(Sample, SteppersCalledDirectlyRefuseStepsThatDoNotGoDownInTime) {
  expect_bad_step_times_refused<ddm::euler>("ddm::euler::step");
  expect_bad_step_times_refused<ddm::ddim>("ddm::ddim::step");
  expect_bad_step_times_refused<ddm::heun>("ddm::heun::step");
  expect_bad_step_times_refused<ddm::dpmpp_2m>("ddm::dpmpp_multistep::step");
}

TEST(Sample, AdaptiveGivesUpOnAFieldItCannotResolve) {
  // v = NaN everywhere: every step is rejected until the step size underflows.
  auto nan_field = [](ddm::batch_view<const double> /*x*/, double /*t*/, ddm::batch_view<double> v) {
    ddm::fill(ddm::host_context{}, v, std::numeric_limits<double>::quiet_NaN());
  };
  auto x = start();
  EXPECT_THROW(ddm::sample(nan_field, x, ddm::schedules::uniform(1), ddm::adaptive_bs32{}), ddm::argument_error);
}

}  // namespace
