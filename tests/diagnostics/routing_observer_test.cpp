// The routing observer on the analytic DDM: it leaves the trajectory bit-identical, reads the
// field's own decision at each step's start (not the field's last call, nor another observer's
// call) without calling the router, reproduces the step's velocity from that decision and the experts' velocities,
// integrates the disagreement as defined, and reads the exact posterior router's choices as
// aligned.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include <ddm/ddm.hpp>

namespace {

namespace dd = ddm::diagnostics;
namespace ds = ddm::synthetic;
const ddm::host_context ctx{};

ddm::batch<double> noise(const ds::analytic_ddm& m, ddm::index_t rows, std::uint64_t seed) {
  ddm::batch<double> x(rows, m.dim());
  ddm::fill_normal(ctx, x.view(), seed);
  return x;
}

bool bit_identical(const ddm::batch<double>& a, const ddm::batch<double>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(double) * static_cast<std::size_t>(a.size())) == 0;
}

// Keeps the state at the start of every step, with the step's velocity.
struct step_recorder {
  std::vector<ddm::batch<double>> states;
  std::vector<ddm::batch<double>> velocities;
  void on_start(ddm::batch_view<const double> x, double) { keep(states, x); }
  void operator()(const ddm::step_event<double>& e) {
    keep(velocities, e.v);
    keep(states, e.x);
  }
  static void keep(std::vector<ddm::batch<double>>& to, ddm::batch_view<const double> x) {
    to.emplace_back(x.rows(), x.cols());
    ddm::copy(ctx, to.back().view(), x);
  }
};

// max over (r, c) of |sum_k w_k v_k - v_step| / (1 + |v_step|), with the observer's decision
// and expert velocities at the step's start: 0 when the decision is the one the step used.
template <class Observer>
double velocity_mismatch(const Observer& obs, const ddm::step_event<double>& e) {
  const auto w = obs.last_weights();
  const auto v = obs.last_expert_velocities();
  const auto b = e.v.rows();
  double worst = 0.0;
  for (ddm::index_t r = 0; r < b; ++r)
    for (ddm::index_t c = 0; c < e.v.cols(); ++c) {
      double s = 0.0;
      for (ddm::index_t k = 0; k < w.cols(); ++k) s += w(r, k) * v(k * b + r, c);
      worst = std::max(worst, std::abs(s - e.v(r, c)) / (1.0 + std::abs(e.v(r, c))));
    }
  return worst;
}

TEST(RoutingObserver, LeavesTheTrajectoryAndTheFieldsCountersUntouched) {
  const ds::analytic_ddm model;
  const auto schedule = ddm::schedules::uniform(12);
  auto plain = ddm::make_routed_field<double>(model.experts(), model.router(3.0), ddm::top_2());
  auto watched = ddm::make_routed_field<double>(model.experts(), model.router(3.0), ddm::top_2());
  auto a = noise(model, 64, 5);
  auto b = noise(model, 64, 5);
  ddm::sample(plain, a, schedule, ddm::heun{});
  auto obs = dd::make_routing_observer<double>(watched, schedule, model.centroids(), {.alignment_every_step = true});
  ddm::sample(watched, b, schedule, ddm::heun{}, obs);
  EXPECT_TRUE(bit_identical(a, b));
  EXPECT_EQ(plain.calls(), watched.calls());
  EXPECT_EQ(plain.expert_evaluations(), watched.expert_evaluations());
  EXPECT_EQ(obs.steps().size(), schedule.steps());
  EXPECT_EQ(obs.expert_evaluations(), schedule.steps() * 64 * model.num_clusters());
}

TEST(RoutingObserver, ReadsTheFieldsDecisionInsteadOfCallingTheRouter) {
  // The router counts its calls: with the observer it is called exactly as often as without, once
  // per field call.
  const ds::analytic_ddm model;
  const auto schedule = ddm::schedules::uniform(7);
  std::size_t router_calls = 0;
  auto exact = model.router(2.0);
  auto counted = ddm::router_fn(model.num_clusters(), "counted",
                                [&](ddm::batch_view<const double> x, double t, ddm::batch_view<double> logits) {
                                  ++router_calls;
                                  exact(x, t, logits);
                                });
  auto field = ddm::make_routed_field<double>(model.experts(), counted, ddm::top_2());
  auto obs = dd::make_routing_observer<double>(field, schedule, model.centroids());
  auto x = noise(model, 16, 4);
  const auto result = ddm::sample(field, x, schedule, ddm::heun{}, obs);
  EXPECT_EQ(router_calls, result.field_evaluations);
  EXPECT_EQ(field.calls(), result.field_evaluations);
  EXPECT_EQ(obs.steps().size(), schedule.steps());
}

TEST(RoutingObserver, ReadsTheStepsDecisionWhenAnotherObserverCallsTheFieldFirst) {
  // The L_eff observer, placed before the routing observer, calls the field at (x_i +- h u, t_i)
  // after each step; the decision the routing observer reads is still the step's own. Under
  // scheduled{0.5, full_ensemble, top_1} with Heun, the steps starting above 0.5 are seen as full
  // ensemble steps, as without the L_eff observer.
  const ds::analytic_ddm model;
  const auto schedule = ddm::schedules::uniform(10);
  auto field = ddm::make_routed_field<double>(model.experts(), model.router(2.0),
                                              ddm::scheduled{0.5, ddm::full_ensemble{}, ddm::top_1()});
  auto sens = dd::make_trajectory_sensitivity<double>(field);
  auto obs = dd::make_routing_observer<double>(field, schedule, model.centroids());
  // The full ensemble's weights are the probabilities at x, so a decision taken at a perturbed
  // state would not reproduce the step's velocity to rounding.
  double worst = 0.0;
  auto check = [&](const ddm::step_event<double>& e) { worst = std::max(worst, velocity_mismatch(obs, e)); };
  auto x = noise(model, 32, 3);
  const auto result = ddm::sample(field, x, schedule, ddm::heun{}, sens, obs, check);
  EXPECT_GT(field.calls(), result.field_evaluations) << "the L_eff observer called the field";
  const double k = static_cast<double>(model.num_clusters());
  ASSERT_EQ(obs.steps().size(), schedule.steps());
  for (const auto& s : obs.steps()) EXPECT_EQ(s.mean_selected, s.t > 0.5 ? k : 1.0) << "step " << s.step;
  std::printf("[ measured ] with the L_eff observer first: max relative |sum_k w_k v_k - v_step| = %.3g\n", worst);
  EXPECT_LT(worst, 1e-14);
}

TEST(RoutingObserver, RefusesAFieldSampledThroughAWrapper) {
  // sample() marks each step's first call on the field it is given; behind a lambda the routed
  // field is never marked, and the observer says so rather than read another call's decision.
  const ds::analytic_ddm model;
  const auto schedule = ddm::schedules::uniform(4);
  auto field = ddm::make_routed_field<double>(model.experts(), model.router(2.0), ddm::top_2());
  auto wrapped = [&](ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) { field(x, t, v); };
  auto obs = dd::make_routing_observer<double>(field, schedule, {}, {.alignment_times = {}});
  auto x = noise(model, 8, 2);
  EXPECT_THROW(ddm::sample(wrapped, x, schedule, ddm::euler{}, obs), ddm::argument_error);
}

TEST(RoutingObserver, RecomputedDecisionAndExpertsReproduceTheStepsVelocity) {
  // sum_k w_k v_k from the observer's decision at (x_i, t_i) is the velocity the step used there.
  const ds::analytic_ddm model;
  const auto schedule = ddm::schedules::uniform(10);
  auto field = ddm::make_routed_field<double>(model.experts(), model.router(2.0), ddm::top_2());
  auto obs = dd::make_routing_observer<double>(field, schedule, model.centroids());
  double worst = 0.0;
  auto check = [&](const ddm::step_event<double>& e) { worst = std::max(worst, velocity_mismatch(obs, e)); };
  auto x = noise(model, 48, 9);
  ddm::sample(field, x, schedule, ddm::heun{}, obs, check);
  std::printf("[ measured ] max relative |sum_k w_k v_k - v_step| = %.3g\n", worst);
  EXPECT_LT(worst, 1e-14);
}

TEST(RoutingObserver, DecidesAtTheStepsStartNotAtTheFieldsLastCall) {
  // full ensemble while t > 0.5, top-1 below. Heun's last call of the step from t_i > 0.5 to
  // t_{i+1} = 0.5 is at 0.5 (top-1); the decision at the step's start is the full ensemble's.
  const ds::analytic_ddm model;
  const auto schedule = ddm::schedules::uniform(10);
  auto field = ddm::make_routed_field<double>(model.experts(), model.router(2.0),
                                              ddm::scheduled{0.5, ddm::full_ensemble{}, ddm::top_1()});
  auto obs = dd::make_routing_observer<double>(field, schedule, model.centroids());
  auto x = noise(model, 32, 3);
  ddm::sample(field, x, schedule, ddm::heun{}, obs);
  const double k = static_cast<double>(model.num_clusters());
  for (const auto& s : obs.steps()) {
    EXPECT_EQ(s.mean_selected, s.t > 0.5 ? k : 1.0) << "step " << s.step << " at t = " << s.t;
    EXPECT_EQ(s.unselected_angle.has_value(), s.t <= 0.5) << "step " << s.step;
  }
}

TEST(RoutingObserver, IntegratedDisagreementMatchesAnIndependentRecomputation) {
  const ds::analytic_ddm model;
  const auto schedule = ddm::schedules::uniform(9);
  for (std::size_t every : {std::size_t{1}, std::size_t{4}}) {
    auto field = ddm::make_routed_field<double>(model.experts(), model.router(4.0), ddm::top_2());
    auto obs = dd::make_routing_observer<double>(field, schedule, {}, {.every = every, .alignment_times = {}});
    step_recorder rec;
    auto x = noise(model, 20, 17);
    ddm::sample(field, x, schedule, ddm::euler{}, obs, rec);
    std::vector<double> expect(20, 0.0);
    for (std::size_t i = 0; i < schedule.steps(); i += every) {
      std::vector<ddm::batch<double>> v;
      std::vector<ddm::batch_view<const double>> views;
      for (std::size_t k = 0; k < model.num_clusters(); ++k) {
        v.emplace_back(20, model.dim());
        auto e = model.expert(k);
        e(rec.states[i].cview(), schedule[i], v.back().view());
      }
      for (auto& b : v) views.push_back(b.cview());
      const auto d = dd::expert_disagreement(ctx, std::span<const ddm::batch_view<const double>>(views));
      const double dt = schedule[i] - schedule[std::min(i + every, schedule.steps())];
      for (std::size_t r = 0; r < 20; ++r) expect[r] += dt * d[r];
    }
    const auto& got = obs.integrated_disagreement();
    ASSERT_EQ(got.size(), 20u);
    for (std::size_t r = 0; r < 20; ++r) EXPECT_NEAR(got[r], expect[r], 1e-12 * expect[r]) << "every " << every;
    EXPECT_EQ(obs.steps().size(), (schedule.steps() + every - 1) / every);
  }
}

TEST(RoutingObserver, TopOneWithTheExactRouterPicksTheNearestCluster) {
  // At tau = 1 the router is the exact posterior p(k | x_t). Top-1 then follows the exact flow
  // of the most probable cluster, and x0_hat = E[x0 | x_t, k] lies among cluster k's components
  // (RMS 1.7 from its centroid with the default model) while the nearest other centroid is at
  // least 5.7 away: x0_hat can only rank its own cluster second when it sits between clusters,
  // which the exact posterior rarely leaves it doing at t <= 0.7. Bound: mean rank <= 1.1, i.e.
  // at most about one pair in ten off by one rank; the perfect value is 1, top-2 with a perfect
  // router gives 1.5 and a uniformly random pick (K + 1) / 2 = 4.5.
  const ds::analytic_ddm model;
  const auto schedule = ddm::schedules::uniform(20);
  auto field = ddm::make_routed_field<double>(model.experts(), model.router(1.0), ddm::top_1());
  auto obs = dd::make_routing_observer<double>(field, schedule, model.centroids());
  auto x = noise(model, 400, 21);
  ddm::sample(field, x, schedule, ddm::heun{}, obs);
  ASSERT_EQ(obs.alignment().size(), 3u);
  for (const auto& a : obs.alignment())
    std::printf("[ measured ] top-1, tau = 1: mean rank %.4f at t = %.2f (%zu of %zu pairs at rank 1)\n",
                *a.pooled_mean_rank(), a.t, a.rank_histogram[0], a.pairs);
  const auto mean = obs.alignment_mean_rank();
  ASSERT_TRUE(mean.has_value());
  std::printf("[ measured ] top-1, tau = 1: mean rank %.4f at t = 0.3, 0.5, 0.7\n", *mean);
  EXPECT_GE(*mean, 1.0);
  EXPECT_LE(*mean, 1.1);
}

TEST(RoutingObserver, FullEnsembleHasNoUnselectedGroupAndRanksEveryExpert) {
  const ds::analytic_ddm model;
  const auto schedule = ddm::schedules::uniform(8);
  auto field = ddm::make_routed_field<double>(model.experts(), model.router(2.0), ddm::full_ensemble{});
  auto obs = dd::make_routing_observer<double>(field, schedule, model.centroids());
  auto x = noise(model, 30, 2);
  ddm::sample(field, x, schedule, ddm::heun{}, obs);
  EXPECT_EQ(obs.angular().unselected_angles(), 0u);
  EXPECT_FALSE(obs.angular().unselected_mean().has_value());
  EXPECT_FALSE(obs.angular().relative_gap().has_value());
  EXPECT_TRUE(obs.angular().selected_mean().has_value());
  for (const auto& s : obs.steps()) {
    EXPECT_FALSE(s.unselected_angle.has_value());
    EXPECT_FALSE(s.angular_gap.has_value());
  }
  // Every expert selected: the ranks 1..K each once per row, mean (K + 1) / 2 exactly.
  const double k = static_cast<double>(model.num_clusters());
  EXPECT_EQ(*obs.alignment_mean_rank(), (k + 1) / 2);
}

TEST(RoutingObserver, TopTwoSelectsExpertsCloserToTheBlendedVelocityUnderAnUnderConfidentRouter) {
  const ds::analytic_ddm model;
  const auto schedule = ddm::schedules::uniform(16);
  for (double tau : {2.0, 4.0}) {
    auto field = ddm::make_routed_field<double>(model.experts(), model.router(tau), ddm::top_2());
    auto obs = dd::make_routing_observer<double>(field, schedule, model.centroids());
    auto x = noise(model, 200, 8);
    ddm::sample(field, x, schedule, ddm::heun{}, obs);
    const auto gap = obs.angular().relative_gap();
    ASSERT_TRUE(gap.has_value());
    std::printf("[ measured ] top-2, tau = %.0f: angular gap %.3f (selected %.3f rad, others %.3f rad); mean rank %.3f\n",
                tau, *gap, *obs.angular().selected_mean(), *obs.angular().unselected_mean(),
                *obs.alignment_mean_rank());
    EXPECT_GT(*gap, 0.0);
    EXPECT_EQ(obs.angular().selected_angles(), 2 * 200 * schedule.steps());
    EXPECT_EQ(obs.angular().unselected_angles(), 6 * 200 * schedule.steps());
  }
}

TEST(RoutingObserver, AlignmentStepsAreTheNearestToTheRequestedTimesAndTheProfileCoversEveryStep) {
  const ds::analytic_ddm model;
  const auto schedule = ddm::schedules::uniform(10);
  auto field = ddm::make_routed_field<double>(model.experts(), model.router(2.0), ddm::top_2());
  auto obs = dd::make_routing_observer<double>(field, schedule, model.centroids(),
                                              {.every = 3, .alignment_every_step = true});
  auto x = noise(model, 16, 4);
  ddm::sample(field, x, schedule, ddm::euler{}, obs);
  // uniform(10) starts steps at 1, 0.9, ..., 0.1: t = 0.7, 0.5, 0.3 are steps 3, 5, 7.
  ASSERT_EQ(obs.alignment_steps(), (std::vector<std::size_t>{7, 5, 3}));
  ASSERT_EQ(obs.alignment().size(), 3u);
  EXPECT_NEAR(obs.alignment()[0].t, 0.7, 1e-12);  // in step order
  EXPECT_NEAR(obs.alignment()[2].t, 0.3, 1e-12);
  // Profile: every ranked step, the measured 0, 3, 6, 9 and the alignment steps 5, 7.
  ASSERT_EQ(obs.profile().records().size(), 6u);
  // Steps: 0, 3, 6, 9 measured, and 5, 7 for alignment only (no disagreement there).
  ASSERT_EQ(obs.steps().size(), 6u);
  for (const auto& s : obs.steps())
    EXPECT_EQ(std::isnan(s.disagreement_mean), s.step % 3 != 0) << "step " << s.step;
}

TEST(RoutingObserver, MisuseIsAnError) {
  const ds::analytic_ddm model;
  const auto schedule = ddm::schedules::uniform(6);
  auto field = ddm::make_routed_field<double>(model.experts(), model.router(2.0), ddm::top_2());
  EXPECT_THROW((void)dd::make_routing_observer<double>(field, schedule, {}, {.every = 0}), ddm::argument_error);
  EXPECT_THROW((void)dd::make_routing_observer<double>(field, schedule, model.centroids().subrows(0, 3)),
               ddm::shape_error);
  EXPECT_THROW((void)dd::make_routing_observer<double>(field, schedule, {}, {.alignment_every_step = true}),
               ddm::argument_error);
  auto obs = dd::make_routing_observer<double>(field, schedule, model.centroids());
  auto x = noise(model, 4, 1);
  EXPECT_THROW(ddm::sample(field, x, ddm::schedules::uniform(7), ddm::euler{}, obs), ddm::argument_error);
}

}  // namespace
