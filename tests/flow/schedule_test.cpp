#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <ddm/flow/schedule.hpp>

namespace {

namespace sch = ddm::schedules;

void expect_strictly_decreasing_in_unit_interval(const ddm::time_schedule& s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    EXPECT_GE(s[i], 0.0);
    EXPECT_LE(s[i], 1.0);
    if (i > 0) {
      EXPECT_LT(s[i], s[i - 1]) << i;
    }
  }
}

TEST(Schedules, UniformHasExactEndpointsAndEqualSteps) {
  const auto s = sch::uniform(8);
  ASSERT_EQ(s.steps(), 8U);
  EXPECT_EQ(s.front(), 1.0);
  EXPECT_EQ(s.back(), 0.0);
  EXPECT_TRUE(s.ends_at_zero());
  for (std::size_t i = 0; i + 1 < s.size(); ++i) EXPECT_NEAR(s[i] - s[i + 1], 0.125, 1e-15);
}

TEST(Schedules, ShiftFormulaTranslatesLambda) {
  for (double t : {0.1, 0.25, 0.5, 0.9}) {
    EXPECT_DOUBLE_EQ(sch::shift(t, 3.0), 3.0 * t / (1.0 + 2.0 * t));
    // logit(shift(t)) = logit(t) + log s  <=>  lambda decreases by log s
    EXPECT_NEAR(ddm::flow::lambda(sch::shift(t, 3.0)), ddm::flow::lambda(t) - std::log(3.0), 1e-12);
  }
  EXPECT_DOUBLE_EQ(sch::shift(0.4, 1.0), 0.4);
  const auto s = sch::shifted(10, 3.0);
  expect_strictly_decreasing_in_unit_interval(s);
  EXPECT_EQ(s.front(), 1.0);
  EXPECT_EQ(s.back(), 0.0);
  EXPECT_GT(s[5], 0.5);  // more of the schedule at high noise
}

TEST(Schedules, KarrasAndUniformLambdaAreMonotoneWithTheirEndpoints) {
  const auto k = sch::karras(10, 1e-3, 1.0, 7.0);
  expect_strictly_decreasing_in_unit_interval(k);
  EXPECT_EQ(k.steps(), 10U);
  EXPECT_EQ(k.front(), 1.0);
  EXPECT_EQ(k[9], 1e-3);
  EXPECT_EQ(k.back(), 0.0);
  const auto l = sch::uniform_lambda(12, 0.99, 0.01);
  expect_strictly_decreasing_in_unit_interval(l);
  EXPECT_EQ(l.steps(), 12U);
  const double h = ddm::flow::lambda(l[1]) - ddm::flow::lambda(l[0]);
  for (std::size_t i = 0; i + 2 < l.size(); ++i)
    EXPECT_NEAR(ddm::flow::lambda(l[i + 1]) - ddm::flow::lambda(l[i]), h, 1e-12);
  const auto open = sch::uniform_lambda(4, 0.9, 0.1, false);
  EXPECT_EQ(open.steps(), 4U);
  EXPECT_EQ(open.back(), 0.1);
}

TEST(Schedules, CustomListsAreValidated) {
  EXPECT_NO_THROW(ddm::time_schedule({1.0, 0.5, 0.0}, ddm::time_schedule::endpoint::zero));
  auto message = [](auto&& make) {
    try {
      make();
    } catch (const ddm::schedule_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message([] { ddm::time_schedule({1.0}); }),
            "ddm::time_schedule: 1 time(s) given, expected at least 2");
  EXPECT_EQ(message([] { ddm::time_schedule({1.0, 0.5, 0.5}); }),
            "ddm::time_schedule: time 2 = 0.5 does not decrease from time 1 = 0.5, expected a strictly decreasing "
            "schedule");
  EXPECT_EQ(message([] { ddm::time_schedule({1.5, 0.5}); }),
            "ddm::time_schedule: time 0 = 1.5, expected a value in [0, 1]");
  EXPECT_EQ(message([] { ddm::time_schedule({1.0, std::numeric_limits<double>::quiet_NaN()}); }),
            "ddm::time_schedule: time 1 = nan, expected a value in [0, 1]");
  EXPECT_EQ(message([] { ddm::time_schedule({1.0, 0.1}, ddm::time_schedule::endpoint::zero); }),
            "ddm::time_schedule: the last time is 0.10000000000000001, expected 0");
  EXPECT_EQ(message([] { (void)sch::uniform(0); }), "ddm::schedules::uniform: argument 'steps' = 0, expected >= 1");
  EXPECT_EQ(message([] { (void)sch::uniform_lambda(10, 1.0, 0.1); }),
            "ddm::schedules::uniform_lambda: argument 't_max' = 1, expected a value in (0, 1)");
  EXPECT_EQ(message([] { (void)sch::karras(10, 0.0); }),
            "ddm::schedules::karras: argument 't_min' = 0, expected 0 < t_min < t_max");
  EXPECT_EQ(message([] { (void)sch::karras(10, 1e-3, 1.0, -1.0); }),
            "ddm::schedules::karras: argument 'rho' = -1, expected a finite value > 0");
  EXPECT_EQ(message([] { (void)sch::shift(0.5, 0.0); }), "ddm::schedules::shift: argument 's' = 0, expected a finite value > 0");
}

}  // namespace
