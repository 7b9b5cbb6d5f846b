// The calibrated router: the schedule interpolates, the adapter divides the wrapped router's logits
// by tau(t), fit_temperature recovers the temperature labels were drawn at, and the fitted schedule
// of the analytic DDM's under-confident router (tau = 2) undoes its temperature at every knot.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <ddm/ddm.hpp>

#include "support/error_message.hpp"

namespace {

const ddm::host_context ctx{};

TEST(TemperatureSchedule, IsPiecewiseLinearAndConstantBeyondTheKnots) {
  const ddm::temperature_schedule tau({0.2, 0.5, 1.0}, {2.0, 1.0, 4.0});
  EXPECT_EQ(tau(0.0), 2.0);
  EXPECT_EQ(tau(0.2), 2.0);
  EXPECT_NEAR(tau(0.35), 1.5, 1e-15);
  EXPECT_EQ(tau(0.5), 1.0);
  EXPECT_NEAR(tau(0.75), 2.5, 1e-15);
  EXPECT_EQ(tau(1.0), 4.0);
  EXPECT_EQ(ddm::temperature_schedule::constant(3.0)(0.7), 3.0);
  const auto message = [](auto&& f) { return ddm::test::error_message<ddm::argument_error>(f); };
  EXPECT_NE(message([] { ddm::temperature_schedule({0.5, 0.5}, {1, 1}); }).find("strictly increasing"),
            std::string::npos);
  EXPECT_NE(message([] { ddm::temperature_schedule({0.5, 1.5}, {1, 1}); }).find("knot 1 = 1.5"), std::string::npos);
  EXPECT_NE(message([] { ddm::temperature_schedule({0.5}, {0.0}); }).find("tau 0 = 0"), std::string::npos);
  EXPECT_NE(message([] { ddm::temperature_schedule({0.5}, {1, 2}); }).find("one per knot"), std::string::npos);
  EXPECT_NE(message([] { ddm::temperature_schedule({}, {}); }).find("'knots' is empty"), std::string::npos);
}

TEST(CalibratedRouter, DividesTheWrappedRoutersLogitsByTauOfT) {
  const ddm::synthetic::analytic_ddm model;
  auto raw = model.router(1.0);
  ddm::calibrated_router calibrated(model.router(1.0), ddm::temperature_schedule({0.0, 1.0}, {0.5, 2.5}));
  static_assert(ddm::router<decltype(calibrated), double>);
  EXPECT_EQ(calibrated.num_experts(), model.num_clusters());
  EXPECT_EQ(calibrated.name(), "calibrated(analytic posterior router)");
  ddm::batch<double> x(16, model.dim()), a(16, 8), b(16, 8);
  ddm::fill_normal(ctx, x.view(), 3);
  for (double t : {0.0, 0.25, 0.9}) {
    raw(x.cview(), t, a.view());
    calibrated(x.cview(), t, b.view());
    const double tau = 0.5 + 2.0 * t;
    for (ddm::index_t r = 0; r < 16; ++r)
      for (ddm::index_t k = 0; k < 8; ++k) EXPECT_NEAR(b(r, k), a(r, k) / tau, 1e-12 * (1 + std::abs(a(r, k)))) << t;
  }
  // As the router of a routed field.
  auto field = ddm::make_routed_field<double>(model.experts(), calibrated, ddm::top_2());
  ddm::batch<double> v(16, model.dim());
  field(x.cview(), 0.5, v.view());
  EXPECT_TRUE(ddm::all_finite(ctx, v.cview()));
}

// Logits z with labels drawn from softmax(z / tau0): the NLL's minimizer is tau0 up to sampling
// noise (N = 20000 rows).
TEST(FitTemperature, RecoversTheTemperatureTheLabelsWereDrawnAt) {
  constexpr ddm::index_t n = 20000, k = 8;
  ddm::batch<double> z(n, k), u(n, 1);
  ddm::fill_normal(ctx, z.view(), 11);
  for (ddm::index_t r = 0; r < n; ++r)
    for (ddm::index_t c = 0; c < k; ++c) z(r, c) *= 3.0;
  ddm::fill_uniform(ctx, u.view(), 12);
  for (double tau0 : {0.5, 1.0, 2.5}) {
    std::vector<int> labels(static_cast<std::size_t>(n));
    for (ddm::index_t r = 0; r < n; ++r) {
      double top = z(r, 0), sum = 0;
      for (ddm::index_t c = 1; c < k; ++c) top = std::max(top, z(r, c));
      for (ddm::index_t c = 0; c < k; ++c) sum += std::exp((z(r, c) - top) / tau0);
      double cdf = 0;
      int label = static_cast<int>(k) - 1;
      for (ddm::index_t c = 0; c < k; ++c) {
        cdf += std::exp((z(r, c) - top) / tau0) / sum;
        if (u(r, 0) < cdf) {
          label = static_cast<int>(c);
          break;
        }
      }
      labels[static_cast<std::size_t>(r)] = label;
    }
    const double fitted = ddm::fit_temperature(z.cview(), std::span<const int>(labels));
    std::printf("[ measured ] labels drawn at tau = %.2f: fitted tau = %.4f\n", tau0, fitted);
    EXPECT_NEAR(fitted / tau0, 1.0, 0.05) << tau0;
    // The fit is the minimum: the NLL rises on either side.
    const double at = ddm::temperature_nll(z.cview(), std::span<const int>(labels), fitted);
    EXPECT_LT(at, ddm::temperature_nll(z.cview(), std::span<const int>(labels), fitted * 1.05));
    EXPECT_LT(at, ddm::temperature_nll(z.cview(), std::span<const int>(labels), fitted / 1.05));
  }
  // Logits constant in every row carry no information: tau = 1.
  ddm::batch<double> flat(4, 3);
  ddm::fill(ctx, flat.view(), 0.25);
  const std::vector<int> some{0, 1, 2, 0};
  EXPECT_EQ(ddm::fit_temperature(flat.cview(), std::span<const int>(some)), 1.0);
}

// The analytic DDM's posterior router with tau = 2 is under-confident by exactly a factor 2 in its
// logits; fitted on held-out labeled data at every knot, the schedule is tau(t) ~ 1/2. The knots
// are where the router is unsure of a fair share of rows: below t ~ 0.3 the default model's
// clusters barely overlap, nearly every label is the router's argmax, and the few rows that are
// not leave the fit ill-determined (measured with these 40000 rows: tau = 0.78 at t = 0.1 and 0.09
// at t = 0.3, against 0.51, 0.50, 0.49 at 0.5, 0.7, 0.9).
TEST(FitTemperature, ScheduleUndoesTheAnalyticRoutersTemperatureAtEveryKnot) {
  const ddm::synthetic::analytic_ddm model;
  auto soft = model.router(2.0);
  const auto held_out = model.sample_data_labeled<double>(40000, 77);
  const auto schedule = ddm::fit_temperature_schedule(soft, held_out.x.cview(), std::span<const int>(held_out.cluster),
                                                      {0.5, 0.7, 0.9}, 5);
  ASSERT_EQ(schedule.taus().size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    std::printf("[ measured ] t = %.1f: fitted tau = %.4f (expected 0.5)\n", schedule.knots()[i], schedule.taus()[i]);
    EXPECT_NEAR(schedule.taus()[i], 0.5, 0.05) << "t = " << schedule.knots()[i];
  }
}

TEST(FitTemperature, ErrorsNameTheArgument) {
  const auto message = [](auto&& f) { return ddm::test::error_message(f); };
  ddm::batch<double> l(3, 4);
  ddm::fill(ctx, l.view(), 0.0);
  l(0, 1) = 1.0;
  const std::vector<int> ok{0, 1, 2}, short_labels{0, 1}, bad{0, 4, 1};
  EXPECT_NE(message([&] { (void)ddm::fit_temperature(l.cview(), std::span<const int>(short_labels)); })
                .find("'labels' has 2 values"),
            std::string::npos);
  EXPECT_NE(message([&] { (void)ddm::fit_temperature(l.cview(), std::span<const int>(bad)); })
                .find("label 1 = 4, expected an expert index in [0, 4)"),
            std::string::npos);
  EXPECT_NE(message([&] { (void)ddm::temperature_nll(l.cview(), std::span<const int>(ok), -1.0); }).find("'tau' = -1"),
            std::string::npos);
  ddm::temperature_fit_options o;
  o.tau_min = 2.0;
  o.tau_max = 1.0;
  EXPECT_NE(message([&] { (void)ddm::fit_temperature(l.cview(), std::span<const int>(ok), o); }).find("tau_min"),
            std::string::npos);
  l(2, 2) = std::nan("");
  EXPECT_NE(message([&] { (void)ddm::fit_temperature(l.cview(), std::span<const int>(ok)); }).find("NaN"),
            std::string::npos);
}

}  // namespace
