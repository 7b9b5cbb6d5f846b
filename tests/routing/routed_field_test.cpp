// The routed field: one call per selected expert on exactly its rows, weighted combination,
// conditioning indices, cost accounting, observers, and no allocation once warmed up.

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <ddm/ddm.hpp>

#include "support/counting_allocator.hpp"  // this binary's only includer

namespace {

const ddm::host_context ctx{};
constexpr ddm::index_t K = 8;

// Expert k's velocity: distinct per expert, depends on x and t.
double value(int k, double x, double t) { return (k + 1) + x * (0.5 + k) * t; }

struct call_log {
  int calls = 0;
  std::vector<int> rows_seen;     // column 0 of x, which the tests set to the row index
  std::vector<int> indices_seen;  // row indices received (conditioned experts)
};

struct probe {
  int k;
  call_log* log;
  void operator()(ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) const {
    ++log->calls;
    for (ddm::index_t r = 0; r < x.rows(); ++r) {
      log->rows_seen.push_back(static_cast<int>(x(r, 0)));
      for (ddm::index_t c = 0; c < x.cols(); ++c) v(r, c) = value(k, x(r, c), t);
    }
  }
};

struct conditioned_probe : probe {
  using probe::operator();
  void operator()(ddm::batch_view<const double> x, double t, ddm::batch_view<double> v,
                  ddm::row_index_view<> rows) const {
    (*this)(x, t, v);
    for (ddm::index_t r = 0; r < rows.rows(); ++r) log->indices_seen.push_back(rows(r, 0));
  }
};

// Row r prefers expert r % 7 (logits -(k - m - 1/4)^2: the quarter keeps m - 1 and m + 1 from tying,
// and tied experts would all be kept); expert 7 has logit -100, so sparse policies never pick it.
void peaked_logits(ddm::batch_view<const double> x, double /*t*/, ddm::batch_view<double> logits) {
  for (ddm::index_t r = 0; r < x.rows(); ++r) {
    const auto m = static_cast<double>(r % 7);
    for (ddm::index_t k = 0; k < K; ++k)
      logits(r, k) = k == 7 ? -100.0 : -(static_cast<double>(k) - m - 0.25) * (static_cast<double>(k) - m - 0.25);
  }
}

auto make_experts(std::vector<call_log>& logs) {
  return ddm::make_ensemble(probe{0, &logs[0]}, conditioned_probe{{1, &logs[1]}}, probe{2, &logs[2]},
                            probe{3, &logs[3]}, conditioned_probe{{4, &logs[4]}}, probe{5, &logs[5]},
                            probe{6, &logs[6]}, probe{7, &logs[7]});
}

ddm::batch<double> rows_as_x(ddm::index_t b, ddm::index_t d) {
  ddm::batch<double> x(b, d);
  ddm::fill_normal(ctx, x.view(), 99);
  for (ddm::index_t r = 0; r < b; ++r) x(r, 0) = static_cast<double>(r);
  return x;
}

template <class Policy>
void check_routing(const Policy& policy, ddm::index_t b, double t) {
  std::vector<call_log> logs(K);
  auto field = ddm::make_routed_field<double>(make_experts(logs), ddm::router_fn(K, "peaked", peaked_logits), policy);
  const auto x = rows_as_x(b, 3);
  ddm::batch<double> v(b, 3);
  field(x.cview(), t, v.view());

  // An independent decision from the same probabilities.
  ddm::batch<double> logits(b, K), p(b, K), w(b, K);
  ddm::batch<std::uint8_t> sel(b, K);
  peaked_logits(x.cview(), t, logits.view());
  ddm::softmax_rows(ctx, logits.cview(), 1.0, p.view());
  policy.select(ctx, p.cview(), t, w.view(), sel.view());

  for (int k = 0; k < K; ++k) {
    std::vector<int> expected_rows;
    for (ddm::index_t r = 0; r < b; ++r)
      if (sel(r, k)) expected_rows.push_back(static_cast<int>(r));
    EXPECT_EQ(logs[static_cast<std::size_t>(k)].calls, expected_rows.empty() ? 0 : 1) << policy.name() << " expert " << k;
    EXPECT_EQ(logs[static_cast<std::size_t>(k)].rows_seen, expected_rows) << policy.name() << " expert " << k;
    if (k == 1 || k == 4) {
      EXPECT_EQ(logs[static_cast<std::size_t>(k)].indices_seen, expected_rows) << "expert " << k;
    }
    EXPECT_EQ(field.last_expert_rows()[static_cast<std::size_t>(k)], expected_rows.size());
  }
  double worst = 0;
  for (ddm::index_t r = 0; r < b; ++r)
    for (ddm::index_t c = 0; c < 3; ++c) {
      double expected = 0;
      for (int k = 0; k < K; ++k) expected += w(r, k) * value(k, x(r, c), t);
      worst = std::max(worst, std::abs(v(r, c) - expected));
    }
  EXPECT_LT(worst, 1e-13) << policy.name();
  for (ddm::index_t r = 0; r < b; ++r)
    for (ddm::index_t k = 0; k < K; ++k) {
      EXPECT_EQ(field.last_decision().selected(r, k), sel(r, k));
      EXPECT_EQ(field.last_decision().weights(r, k), w(r, k));
    }
}

TEST(RoutedField, EachExpertIsCalledOnceOnExactlyItsRows) {
  check_routing(ddm::top_1(), 20, 0.6);
  check_routing(ddm::top_2(), 20, 0.6);
  check_routing(ddm::top_k{3}, 5, 0.2);
  check_routing(ddm::top_p{0.9}, 20, 0.9);
  check_routing(ddm::threshold{0.05}, 20, 0.4);
  check_routing(ddm::full_ensemble{}, 20, 1.0);
  check_routing(ddm::full_ensemble{1e-6}, 20, 0.0);
  check_routing(ddm::scheduled{0.5, ddm::full_ensemble{}, ddm::top_2()}, 13, 0.7);
  check_routing(ddm::scheduled{0.5, ddm::full_ensemble{}, ddm::top_2()}, 13, 0.3);
}

TEST(RoutedField, UnselectedExpertIsNeverCalled) {
  std::vector<call_log> logs(K);
  auto field = ddm::make_routed_field<double>(make_experts(logs), ddm::router_fn(K, "peaked", peaked_logits),
                                              ddm::top_2());
  const auto x = rows_as_x(32, 2);
  ddm::batch<double> v(32, 2);
  for (double t : {1.0, 0.5, 0.0}) field(x.cview(), t, v.view());
  EXPECT_EQ(logs[7].calls, 0);
  EXPECT_EQ(field.expert_calls()[7], 0u);
  EXPECT_EQ(field.expert_rows()[7], 0u);
  for (int k = 0; k < 7; ++k) EXPECT_EQ(logs[static_cast<std::size_t>(k)].calls, 3) << k;
  EXPECT_EQ(field.calls(), 3u);
}

TEST(RoutedField, TopOneWithAOneHotRouterIsThatExpertAlone) {
  std::vector<call_log> logs(K);
  // Row r: logit 0 for expert (3 r) % 8, -1e4 for the others: probability 1 to the last bit.
  auto one_hot = ddm::router_fn(K, "one-hot", [](ddm::batch_view<const double> x, double, ddm::batch_view<double> l) {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t k = 0; k < K; ++k) l(r, k) = k == (3 * r) % K ? 0.0 : -1e4;
  });
  auto field = ddm::make_routed_field<double>(make_experts(logs), one_hot, ddm::top_1());
  const auto x = rows_as_x(16, 4);
  ddm::batch<double> v(16, 4);
  field(x.cview(), 0.35, v.view());
  for (ddm::index_t r = 0; r < 16; ++r)
    for (ddm::index_t c = 0; c < 4; ++c) EXPECT_EQ(v(r, c), value(static_cast<int>((3 * r) % K), x(r, c), 0.35));
}

TEST(RoutedField, ConditionedExpertsReceiveOriginalRowIndices) {
  std::vector<call_log> logs(K);
  auto field = ddm::make_routed_field<double>(make_experts(logs), ddm::router_fn(K, "peaked", peaked_logits),
                                              ddm::top_2());
  static_assert(ddm::conditioned_velocity_field<decltype(field), double>);
  const auto x = rows_as_x(14, 2);
  ddm::batch<double> v(14, 2);
  // This batch is itself a sub-batch: its row i is row 100 + 3 i of some larger batch.
  std::vector<std::int32_t> outer(14);
  for (std::size_t i = 0; i < outer.size(); ++i) outer[i] = static_cast<std::int32_t>(100 + 3 * i);
  field(x.cview(), 0.5, v.view(), ddm::row_index_view<>(outer.data(), 14, 1));
  for (int k : {1, 4}) {
    const auto& log = logs[static_cast<std::size_t>(k)];
    ASSERT_EQ(log.indices_seen.size(), log.rows_seen.size());
    ASSERT_FALSE(log.rows_seen.empty());
    for (std::size_t i = 0; i < log.rows_seen.size(); ++i)
      EXPECT_EQ(log.indices_seen[i], 100 + 3 * log.rows_seen[i]);
  }
}

// An expert set that takes a call's groups together and records them, evaluating through an
// inner ensemble; Collective makes it ask for a call even when there are no rows.
template <class Inner, bool Collective = false>
struct grouped_recorder {
  static constexpr bool collective = Collective;
  Inner inner;
  std::vector<std::vector<std::size_t>> calls;  // the experts of each evaluate_groups call, in order

  [[nodiscard]] std::size_t size() const { return inner.size(); }
  void evaluate(std::size_t k, ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) {
    inner.evaluate(k, x, t, v);
  }
  void evaluate(std::size_t k, ddm::batch_view<const double> x, double t, ddm::batch_view<double> v,
                ddm::row_index_view<> rows) {
    inner.evaluate(k, x, t, v, rows);
  }
  void evaluate_groups(double t, std::span<const ddm::expert_group<double>> groups) {
    auto& experts = calls.emplace_back();
    for (const auto& g : groups) {
      experts.push_back(g.expert);
      inner.evaluate(g.expert, g.x, t, g.v, g.rows);
    }
  }
};

TEST(RoutedField, HandsAGroupedExpertSetEveryGroupOfACallAtOnceWithTheSameResult) {
  using inner_type = decltype(make_experts(std::declval<std::vector<call_log>&>()));
  static_assert(ddm::grouped_expert_set<grouped_recorder<inner_type>, double>);
  static_assert(!ddm::grouped_expert_set<inner_type, double>);
  std::vector<std::int32_t> outer(23);
  for (std::size_t i = 0; i < outer.size(); ++i) outer[i] = static_cast<std::int32_t>(7 + 2 * i);
  const ddm::row_index_view<> outer_rows(outer.data(), 23, 1);
  const auto x = rows_as_x(23, 3);
  auto compare = [&](const auto& policy) {
    std::vector<call_log> plain_logs(K), grouped_logs(K);
    auto plain = ddm::make_routed_field<double>(make_experts(plain_logs), ddm::router_fn(K, "peaked", peaked_logits),
                                                policy);
    auto grouped = ddm::make_routed_field<double>(grouped_recorder<inner_type>{make_experts(grouped_logs), {}},
                                                  ddm::router_fn(K, "peaked", peaked_logits), policy);
    ddm::batch<double> v_plain(23, 3), v_grouped(23, 3);
    for (double t : {0.9, 0.4}) {
      plain(x.cview(), t, v_plain.view(), outer_rows);
      grouped(x.cview(), t, v_grouped.view(), outer_rows);
      for (ddm::index_t r = 0; r < 23; ++r)
        for (ddm::index_t c = 0; c < 3; ++c) ASSERT_EQ(v_grouped(r, c), v_plain(r, c)) << policy.name() << " t " << t;
    }
    const auto& calls = grouped.experts().calls;
    ASSERT_EQ(calls.size(), 2u) << "one evaluate_groups per routed-field call";
    std::vector<std::size_t> selected;
    for (std::size_t k = 0; k < K; ++k)
      if (grouped.last_expert_rows()[k] != 0) selected.push_back(k);
    EXPECT_EQ(calls.back(), selected) << "one group per selected expert, ascending";
    for (std::size_t k = 0; k < K; ++k) {
      EXPECT_EQ(grouped_logs[k].rows_seen, plain_logs[k].rows_seen) << "expert " << k;
      EXPECT_EQ(grouped_logs[k].indices_seen, plain_logs[k].indices_seen) << "expert " << k;
      EXPECT_EQ(grouped.expert_rows()[k], plain.expert_rows()[k]) << "expert " << k;
    }
  };
  compare(ddm::top_1());
  compare(ddm::top_2());
  compare(ddm::full_ensemble{});
  compare(ddm::scheduled{0.5, ddm::full_ensemble{}, ddm::top_2()});
}

TEST(RoutedField, CallsACollectiveExpertSetEvenWithNoRows) {
  using inner_type = decltype(make_experts(std::declval<std::vector<call_log>&>()));
  std::vector<call_log> logs(K);
  auto collective = ddm::make_routed_field<double>(grouped_recorder<inner_type, true>{make_experts(logs), {}},
                                                   ddm::router_fn(K, "peaked", peaked_logits), ddm::top_2());
  auto local = ddm::make_routed_field<double>(grouped_recorder<inner_type, false>{make_experts(logs), {}},
                                              ddm::router_fn(K, "peaked", peaked_logits), ddm::top_2());
  ddm::batch<double> x(0, 3), v(0, 3);
  collective(x.cview(), 0.5, v.view());
  local(x.cview(), 0.5, v.view());
  ASSERT_EQ(collective.experts().calls.size(), 1u);
  EXPECT_TRUE(collective.experts().calls[0].empty());
  EXPECT_TRUE(local.experts().calls.empty());
}

TEST(RoutedField, CostOfTopTwoOfEightIsAQuarterOfTheFullEnsemble) {
  auto count_rows = [](auto policy) {
    std::vector<call_log> logs(K);
    auto field = ddm::make_routed_field<double>(make_experts(logs), ddm::router_fn(K, "peaked", peaked_logits), policy);
    const auto x = rows_as_x(64, 2);
    ddm::batch<double> v(64, 2);
    for (double t : {0.9, 0.5, 0.1}) field(x.cview(), t, v.view());
    std::printf("[ measured ] %-14s expert row evaluations %4zu over %zu routed rows, relative cost %.3f\n",
                policy.name().c_str(), field.expert_evaluations(), field.rows_routed(), field.relative_cost());
    return std::pair{field.expert_evaluations(), field.relative_cost()};
  };
  const auto full = count_rows(ddm::full_ensemble{});
  const auto top2 = count_rows(ddm::top_2());
  const auto top1 = count_rows(ddm::top_1());
  EXPECT_EQ(full.first, 3u * 64u * K);
  EXPECT_EQ(4 * top2.first, full.first);
  EXPECT_EQ(8 * top1.first, full.first);
  EXPECT_EQ(full.second, 1.0);
  EXPECT_EQ(top2.second, 0.25);
}

// At t = 1 a router that sees only equal priors ties every expert: top-1 keeps them all (the tie
// rule), so the row is the experts' mean and the cost counts all K evaluations, not expert 0's one.
TEST(RoutedField, TiedExpertsAreAllEvaluatedAndCounted) {
  std::vector<call_log> logs(K);
  auto flat = ddm::router_fn(K, "priors", [](ddm::batch_view<const double> x, double, ddm::batch_view<double> l) {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t k = 0; k < K; ++k) l(r, k) = std::log(1.0 / K);
  });
  auto field = ddm::make_routed_field<double>(make_experts(logs), flat, ddm::top_1());
  const auto x = rows_as_x(10, 2);
  ddm::batch<double> v(10, 2);
  field(x.cview(), 1.0, v.view());
  EXPECT_EQ(field.expert_evaluations(), 10u * K);
  EXPECT_EQ(field.relative_cost(), 1.0);
  for (int k = 0; k < K; ++k) EXPECT_EQ(logs[static_cast<std::size_t>(k)].calls, 1) << k;
  for (ddm::index_t r = 0; r < 10; ++r)
    for (ddm::index_t c = 0; c < 2; ++c) {
      double mean = 0;
      for (int k = 0; k < K; ++k) mean += value(k, x(r, c), 1.0) / K;
      EXPECT_NEAR(v(r, c), mean, 1e-13);
    }
}

TEST(RoutedField, ObserversSeeTheDecisionAndPerCallCounts) {
  std::vector<call_log> logs(K);
  auto field = ddm::make_routed_field<double>(make_experts(logs), ddm::router_fn(K, "peaked", peaked_logits),
                                              ddm::top_p{0.95});
  int events = 0;
  field.add_observer([&](const ddm::routing_event<double>& e) {
    ++events;
    EXPECT_EQ(e.call, static_cast<std::size_t>(events - 1));
    std::size_t selected = 0, reported = 0;
    for (ddm::index_t r = 0; r < e.selected.rows(); ++r)
      for (ddm::index_t k = 0; k < K; ++k) selected += e.selected(r, k);
    for (auto n : e.rows_per_expert) reported += n;
    EXPECT_EQ(selected, reported);
    for (ddm::index_t k = 0; k < K; ++k) {
      std::size_t column = 0;
      for (ddm::index_t r = 0; r < e.selected.rows(); ++r) column += e.selected(r, k);
      EXPECT_EQ(column, e.rows_per_expert[static_cast<std::size_t>(k)]);
    }
    EXPECT_EQ(e.probabilities.rows(), e.x.rows());
    EXPECT_EQ(e.v.cols(), e.x.cols());
  });
  const auto x = rows_as_x(10, 2);
  ddm::batch<double> v(10, 2);
  field(x.cview(), 0.8, v.view());
  field(x.cview(), 0.2, v.view());
  EXPECT_EQ(events, 2);
  field.reset_counts();
  EXPECT_EQ(field.calls(), 0u);
  EXPECT_EQ(field.expert_evaluations(), 0u);
}

TEST(RoutedField, KeepsTheDecisionOfEachStepsStartForObserversToRead) {
  // Each call records its decision once (time, call index, the (B, K) selection, the rows each
  // expert evaluated); the call marked as a step's start stays step_decision() while later calls
  // (a corrector, another observer's) become last_decision().
  std::vector<call_log> logs(K);
  auto field = ddm::make_routed_field<double>(make_experts(logs), ddm::router_fn(K, "peaked", peaked_logits),
                                              ddm::top_2());
  EXPECT_EQ(field.step_decision(), nullptr);
  const auto x = rows_as_x(9, 2);
  const auto y = rows_as_x(5, 2);
  ddm::batch<double> v(9, 2), w(5, 2);
  field(x.cview(), 0.5, v.view());
  EXPECT_EQ(field.step_decision(), nullptr) << "no call was marked";
  field.mark_step_start();
  ASSERT_NE(field.step_decision(), nullptr);
  EXPECT_EQ(field.step_decision(), &field.last_decision());
  field(y.cview(), 0.25, w.view());
  field(x.cview(), 0.5, v.view());
  const auto* start = field.step_decision();
  ASSERT_NE(start, nullptr);
  EXPECT_EQ(start->t, 0.5);
  EXPECT_EQ(start->call, 0u);
  EXPECT_EQ(field.last_decision().call, 2u);
  EXPECT_NE(start, &field.last_decision());
  EXPECT_EQ(start->selected.rows(), 9);
  EXPECT_EQ(start->selected_pairs(), 18u) << "top-2 of 9 rows";
  std::size_t column_sum = 0;
  for (ddm::index_t r = 0; r < start->selected.rows(); ++r)
    for (ddm::index_t k = 0; k < K; ++k) column_sum += start->selected(r, k);
  EXPECT_EQ(column_sum, start->selected_pairs());

  // ddm::sample marks the first call of every step: under Heun the step's start decision
  // is the one at t_i, the last call's at t_{i+1}.
  const auto schedule = ddm::schedules::uniform(4);
  ddm::batch<double> z = rows_as_x(9, 2);
  std::vector<double> start_times;
  ddm::sample(field, z, schedule, ddm::heun{}, [&](const ddm::step_event<double>& e) {
    start_times.push_back(field.step_decision()->t);
    EXPECT_EQ(field.last_decision().t, e.t_next == 0.0 ? e.t : e.t_next);
  });
  ASSERT_EQ(start_times.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(start_times[i], schedule[i]);
}

TEST(RoutedField, WithoutObserversSampleLeavesTheSameStepDecisionBehind) {
  // Without observers ddm::sample marks only the last step's start (nothing reads the others):
  // after the run, step_decision() and last_decision() are what a run with observers leaves.
  const auto schedule = ddm::schedules::uniform(5);
  std::vector<call_log> logs_a(K), logs_b(K);
  auto watched = ddm::make_routed_field<double>(make_experts(logs_a), ddm::router_fn(K, "peaked", peaked_logits),
                                                ddm::top_2());
  auto unwatched = ddm::make_routed_field<double>(make_experts(logs_b), ddm::router_fn(K, "peaked", peaked_logits),
                                                  ddm::top_2());
  ddm::batch<double> a = rows_as_x(9, 2), b = rows_as_x(9, 2);
  std::size_t steps_seen = 0;
  ddm::sample(watched, a, schedule, ddm::heun{}, [&](const ddm::step_event<double>&) { ++steps_seen; });
  ddm::sample(unwatched, b, schedule, ddm::heun{});
  ASSERT_EQ(steps_seen, 5u);
  ASSERT_NE(watched.step_decision(), nullptr);
  ASSERT_NE(unwatched.step_decision(), nullptr);
  for (const auto* d : {watched.step_decision(), &watched.last_decision()}) {
    const auto* e = d == watched.step_decision() ? unwatched.step_decision() : &unwatched.last_decision();
    EXPECT_EQ(d->t, e->t);
    EXPECT_EQ(d->call, e->call);
    ASSERT_EQ(d->selected.rows(), e->selected.rows());
    for (ddm::index_t r = 0; r < d->selected.rows(); ++r)
      for (ddm::index_t k = 0; k < K; ++k) EXPECT_EQ(d->selected(r, k), e->selected(r, k));
  }
  EXPECT_EQ(unwatched.step_decision()->t, schedule[4]);
}

// Allocation-free experts and router, for the allocation count.
struct affine_expert {
  double a;
  void operator()(ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) const {
    ddm::lincomb(ctx, v, {a * t}, x);
  }
};

TEST(RoutedField, AllocatesNothingAfterTheFirstCallOfAShape) {
  ddm::expert_vector<affine_expert> experts(std::vector<affine_expert>{{1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}});
  for (int policy = 0; policy < 3; ++policy) {
    auto run = [&](auto pol) {
      auto field = ddm::make_routed_field<double>(experts, ddm::router_fn(K, "peaked", peaked_logits), pol);
      ddm::batch<double> x(48, 5), v(48, 5);
      ddm::fill_normal(ctx, x.view(), 1);
      field(x.cview(), 0.5, v.view());
      const long before = ddm::test::allocations.load();
      for (double t : {0.9, 0.4, 0.1, 0.0}) field(x.cview(), t, v.view());
      const long after = ddm::test::allocations.load();
      EXPECT_EQ(after - before, 0) << pol.name();
    };
    if (policy == 0) run(ddm::top_2());
    if (policy == 1) run(ddm::full_ensemble{});
    if (policy == 2) run(ddm::top_p{0.7});
  }
}

TEST(RoutedField, IsAVelocityFieldForSample) {
  ddm::expert_vector<affine_expert> experts(std::vector<affine_expert>{{-1}, {-2}, {-3}, {-4}, {-5}, {-6}, {-7}, {-8}});
  auto field = ddm::make_routed_field<double>(experts, ddm::router_fn(K, "peaked", peaked_logits), ddm::top_2());
  static_assert(ddm::velocity_field<decltype(field), double>);
  ddm::batch<double> x(9, 3);
  ddm::fill_normal(ctx, x.view(), 5);
  const auto result = ddm::sample(field, x, ddm::schedules::uniform(10), ddm::heun{});
  EXPECT_EQ(field.calls(), result.field_evaluations);
  EXPECT_TRUE(ddm::all_finite(ctx, x.cview()));
}

TEST(RoutedField, ErrorsNameTheirCause) {
  std::vector<call_log> logs(K);
  EXPECT_THROW((void)ddm::make_routed_field<double>(make_experts(logs), ddm::router_fn(7, "short", peaked_logits),
                                                    ddm::top_2()),
               ddm::argument_error);
  auto nan_router = ddm::router_fn(K, "broken_router", [](ddm::batch_view<const double> x, double, ddm::batch_view<double> l) {
    ddm::fill(ctx, l, 0.0);
    if (x.rows() > 3) l(3, 6) = std::nan("");
  });
  auto field = ddm::make_routed_field<double>(make_experts(logs), nan_router, ddm::top_2());
  auto x = rows_as_x(5, 2);
  ddm::batch<double> v(5, 2);
  try {
    field(x.cview(), 0.5, v.view());
    FAIL() << "expected non_finite_error";
  } catch (const ddm::non_finite_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("broken_router"), std::string::npos) << what;
    EXPECT_NE(what.find("row 3"), std::string::npos) << what;
    EXPECT_NE(what.find("expert 6"), std::string::npos) << what;
  }
  auto ok = ddm::make_routed_field<double>(make_experts(logs), ddm::router_fn(K, "peaked", peaked_logits), ddm::top_k{9});
  EXPECT_THROW(ok(x.cview(), 0.5, v.view()), ddm::argument_error);  // k > K
  auto good = ddm::make_routed_field<double>(make_experts(logs), ddm::router_fn(K, "peaked", peaked_logits), ddm::top_2());
  EXPECT_THROW(good(x.cview(), 0.5, x.view()), ddm::argument_error);  // v is x
  EXPECT_THROW(good(x.cview(), 1.5, v.view()), ddm::argument_error);
  ddm::batch<double> wrong(5, 3);
  EXPECT_THROW(good(x.cview(), 0.5, wrong.view()), ddm::shape_error);
}

TEST(NearestCentroidRouter, ScoresMinusSquaredDistanceOfTheDataPrediction) {
  ddm::batch<double> c(3, 2);
  const double cs[3][2] = {{0, 0}, {2, 1}, {-1, 3}};
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 2; ++j) c(k, j) = cs[k][j];
  ddm::nearest_centroid_router router(c.cview(), 0.5);
  ddm::batch<double> x(2, 2), l(2, 3);
  x(0, 0) = 1.0;
  x(0, 1) = 0.5;
  x(1, 0) = -2.0;
  x(1, 1) = 4.0;
  for (double t : {0.0, 0.3, 1.0}) {
    router(x.cview(), t, l.view());
    const double g = (1 - t) / ((1 - t) * (1 - t) + t * t);  // x0_hat = g x for standard normal data
    for (int r = 0; r < 2; ++r)
      for (int k = 0; k < 3; ++k) {
        const double d0 = g * x(r, 0) - cs[k][0];
        const double d1 = g * x(r, 1) - cs[k][1];
        EXPECT_NEAR(l(r, k), -(d0 * d0 + d1 * d1) / 0.5, 1e-12) << t;
      }
  }
  EXPECT_EQ(router.num_experts(), 3u);
  EXPECT_THROW(ddm::nearest_centroid_router(c.cview(), 0.0), ddm::argument_error);
}

// An embedding written for the alignment diagnostics (dim(D), phi(ctx, in, out)) serves the router
// as it is: the router's logits are the distances of phi(x0_hat), and the alignment ranks of the
// same states under the same phi put the router's favourite expert first.
struct doubling_embedding {
  [[nodiscard]] ddm::index_t dim(ddm::index_t d) const noexcept { return d; }
  template <class T, class Space>
  void operator()(const ddm::execution_context<Space>& c, ddm::batch_view<const T, Space> in,
                  ddm::batch_view<T, Space> out) const {
    ddm::lincomb(c, out, {2.0}, in);
  }
};
static_assert(ddm::diagnostics::embedding<doubling_embedding, double>);

TEST(NearestCentroidRouter, TakesAnEmbeddingInTheDiagnosticsForm) {
  ddm::batch<double> c(3, 2);
  const double cs[3][2] = {{0, 0}, {2, 1}, {-1, 3}};
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 2; ++j) c(k, j) = cs[k][j];
  ddm::nearest_centroid_router router(c.cview(), 0.5, doubling_embedding{});
  ddm::batch<double> x(2, 2), l(2, 3), v(2, 2);
  x(0, 0) = 1.0;
  x(0, 1) = 0.5;
  x(1, 0) = -2.0;
  x(1, 1) = 4.0;
  const double t = 0.3;
  router(x.cview(), t, l.view());
  const double g = (1 - t) / ((1 - t) * (1 - t) + t * t);
  ddm::batch<std::uint8_t> best(2, 3);
  for (int r = 0; r < 2; ++r) {
    int argmax = 0;
    for (int k = 0; k < 3; ++k) {
      const double d0 = 2 * g * x(r, 0) - cs[k][0];
      const double d1 = 2 * g * x(r, 1) - cs[k][1];
      EXPECT_NEAR(l(r, k), -(d0 * d0 + d1 * d1) / 0.5, 1e-12);
      if (l(r, k) > l(r, argmax)) argmax = k;
    }
    best(r, argmax) = 1;
  }
  ddm::standard_normal_velocity{}(x.cview(), t, v.view());  // the router's denoiser
  const auto ranks =
      ddm::diagnostics::alignment_ranks(ctx, x.cview(), t, v.cview(), best.cview(), c.cview(), doubling_embedding{});
  EXPECT_EQ(ranks.mean_rank, (std::vector<double>{1.0, 1.0}));
}

}  // namespace
