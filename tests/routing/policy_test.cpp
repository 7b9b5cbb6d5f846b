// Routing policies: the invariants of each policy's selection and weights, identities between
// policies, the tie rule, the scheduled switch, and argument errors.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <ddm/ddm.hpp>

#include "support/error_message.hpp"
#include "support/router_probabilities.hpp"

namespace {

const ddm::host_context ctx{};
constexpr ddm::index_t B = 64;
constexpr ddm::index_t K = 8;

// Router probabilities of varied sharpness (support/router_probabilities.hpp).
ddm::batch<double> probabilities(std::uint64_t seed = 42) {
  return ddm::test::router_probabilities(B, K, seed);
}

struct decision {
  ddm::batch<double> w{B, K};
  ddm::batch<std::uint8_t> sel{B, K};
};

template <class Policy>
decision run(const Policy& policy, const ddm::batch<double>& p, double t = 0.5) {
  decision d{ddm::batch<double>(p.rows(), p.cols()), ddm::batch<std::uint8_t>(p.rows(), p.cols())};
  policy.select(ctx, p.cview(), t, d.w.view(), d.sel.view());
  return d;
}

int count(const decision& d, ddm::index_t r) {
  int n = 0;
  for (ddm::index_t k = 0; k < d.sel.cols(); ++k) n += d.sel(r, k);
  return n;
}
double weight_sum(const decision& d, ddm::index_t r) {
  double s = 0;
  for (ddm::index_t k = 0; k < d.w.cols(); ++k) s += d.w(r, k);
  return s;
}
// Weights are positive exactly on the selected experts (p > 0 everywhere here).
void expect_weights_on_selection(const decision& d) {
  for (ddm::index_t r = 0; r < d.w.rows(); ++r)
    for (ddm::index_t k = 0; k < d.w.cols(); ++k) EXPECT_EQ(d.w(r, k) > 0, d.sel(r, k) == 1) << r << "," << k;
}
// Every selected expert is at least as probable as every unselected one.
void expect_prefix_of_ranking(const ddm::batch<double>& p, const decision& d) {
  for (ddm::index_t r = 0; r < p.rows(); ++r) {
    double lowest_selected = 2, highest_unselected = -1;
    for (ddm::index_t k = 0; k < p.cols(); ++k) {
      if (d.sel(r, k)) {
        lowest_selected = std::min(lowest_selected, p(r, k));
      } else {
        highest_unselected = std::max(highest_unselected, p(r, k));
      }
    }
    EXPECT_GE(lowest_selected, highest_unselected) << "row " << r;
  }
}

TEST(Policies, TopKSelectsTheKMostProbableAndRenormalizes) {
  const auto p = probabilities();
  for (int k = 1; k <= K; ++k) {
    const auto d = run(ddm::top_k{k}, p);
    expect_weights_on_selection(d);
    expect_prefix_of_ranking(p, d);
    for (ddm::index_t r = 0; r < B; ++r) {
      EXPECT_EQ(count(d, r), k);
      EXPECT_NEAR(weight_sum(d, r), 1.0, 1e-15);
      double mass = 0;
      for (ddm::index_t e = 0; e < K; ++e) mass += d.sel(r, e) ? p(r, e) : 0.0;
      for (ddm::index_t e = 0; e < K; ++e) {
        if (d.sel(r, e)) {
          EXPECT_NEAR(d.w(r, e), p(r, e) / mass, 1e-15);
        }
      }
    }
  }
}

TEST(Policies, TopKWithKExpertsIsTheFullEnsembleRenormalized) {
  const auto p = probabilities(7);
  const auto a = run(ddm::top_k{K}, p);
  const auto f = run(ddm::full_ensemble{}, p);
  for (ddm::index_t r = 0; r < B; ++r) {
    const double s = weight_sum(f, r);
    for (ddm::index_t k = 0; k < K; ++k) {
      EXPECT_EQ(a.sel(r, k), 1);
      EXPECT_EQ(f.sel(r, k), 1);
      EXPECT_NEAR(a.w(r, k), f.w(r, k) / s, 1e-15);
    }
  }
}

TEST(Policies, FullEnsembleWeightsAreTheProbabilities) {
  const auto p = probabilities(3);
  const auto f = run(ddm::full_ensemble{}, p);
  for (ddm::index_t r = 0; r < B; ++r) {
    double ps = 0;
    for (ddm::index_t k = 0; k < K; ++k) {
      EXPECT_EQ(f.w(r, k), p(r, k));
      ps += p(r, k);
    }
    EXPECT_EQ(count(f, r), K);
    EXPECT_NEAR(weight_sum(f, r), ps, 1e-15);
  }
  // With a floor: experts below it are skipped, weights still unnormalized, the top one kept.
  const auto g = run(ddm::full_ensemble{0.2}, p);
  expect_weights_on_selection(g);
  for (ddm::index_t r = 0; r < B; ++r) {
    double ps = 0, top = 0;
    for (ddm::index_t k = 0; k < K; ++k) {
      top = std::max(top, p(r, k));
      if (g.sel(r, k)) {
        ps += p(r, k);
        EXPECT_EQ(g.w(r, k), p(r, k));
      }
    }
    for (ddm::index_t k = 0; k < K; ++k) EXPECT_EQ(g.sel(r, k) == 1, p(r, k) >= 0.2 || p(r, k) == top);
    EXPECT_NEAR(weight_sum(g, r), ps, 1e-15);
  }
}

TEST(Policies, TopPIsTheSmallestPrefixReachingP) {
  const auto p = probabilities(5);
  for (double nucleus : {0.05, 0.5, 0.8, 0.95, 0.999}) {
    const auto d = run(ddm::top_p{nucleus}, p);
    expect_weights_on_selection(d);
    expect_prefix_of_ranking(p, d);
    for (ddm::index_t r = 0; r < B; ++r) {
      EXPECT_NEAR(weight_sum(d, r), 1.0, 1e-15);
      double mass = 0, smallest = 2;
      for (ddm::index_t k = 0; k < K; ++k)
        if (d.sel(r, k)) {
          mass += p(r, k);
          smallest = std::min(smallest, p(r, k));
        }
      EXPECT_GE(mass, nucleus - 1e-15) << "row " << r;
      EXPECT_LT(mass - smallest, nucleus) << "row " << r << ": a smaller prefix already reaches p";
    }
  }
  const auto all = run(ddm::top_p{1.0}, p);
  for (ddm::index_t r = 0; r < B; ++r) EXPECT_EQ(count(all, r), K);
}

TEST(Policies, ThresholdKeepsEveryExpertAboveTheFloorAndRenormalizes) {
  const auto p = probabilities(9);
  for (double floor : {0.0, 0.05, 0.2, 0.6, 1.0}) {
    const auto d = run(ddm::threshold{floor}, p);
    expect_weights_on_selection(d);
    for (ddm::index_t r = 0; r < B; ++r) {
      double top = 0;
      for (ddm::index_t k = 0; k < K; ++k) top = std::max(top, p(r, k));
      for (ddm::index_t k = 0; k < K; ++k) EXPECT_EQ(d.sel(r, k) == 1, p(r, k) >= floor || p(r, k) == top);
      EXPECT_NEAR(weight_sum(d, r), 1.0, 1e-15);
    }
  }
}

// The tie rule: experts exactly tied with the last one a policy keeps are all kept, and share
// that place's mass through the renormalization; a row without ties is decided as before.
ddm::batch<double> tied_rows() {
  const double rows[5][4] = {{0.25, 0.25, 0.25, 0.25},  // t = 1 with equal priors
                             {0.1, 0.3, 0.3, 0.3},
                             {0.4, 0.1, 0.4, 0.1},
                             {0.1, 0.4, 0.3, 0.2},      // no tie
                             {1.0, 0.0, 0.0, 0.0}};     // ties at 0 carry no mass: not extended
  ddm::batch<double> p(5, 4);
  for (ddm::index_t r = 0; r < 5; ++r)
    for (ddm::index_t k = 0; k < 4; ++k) p(r, k) = rows[r][k];
  return p;
}
std::vector<int> selected_experts(const decision& d, ddm::index_t r) {
  std::vector<int> s;
  for (ddm::index_t k = 0; k < d.sel.cols(); ++k)
    if (d.sel(r, k)) s.push_back(static_cast<int>(k));
  return s;
}
using experts = std::vector<int>;

TEST(Policies, ExactTiesAtTheBoundaryAreSplitNotBroken) {
  const auto p = tied_rows();
  const auto t1 = run(ddm::top_1(), p);
  const auto t2 = run(ddm::top_2(), p);
  EXPECT_EQ(selected_experts(t1, 0), (experts{0, 1, 2, 3}));
  EXPECT_EQ(selected_experts(t2, 0), (experts{0, 1, 2, 3}));
  EXPECT_EQ(selected_experts(t1, 1), (experts{1, 2, 3}));
  EXPECT_EQ(selected_experts(t2, 1), (experts{1, 2, 3}));
  EXPECT_EQ(selected_experts(t1, 2), (experts{0, 2}));
  EXPECT_EQ(selected_experts(t2, 2), (experts{0, 2}));  // the boundary (0.4) is not tied with a dropped one
  EXPECT_EQ(selected_experts(run(ddm::top_k{3}, p), 2), (experts{0, 1, 2, 3}));
  // Tied experts share the place's mass equally.
  for (int k = 0; k < 4; ++k) EXPECT_EQ(t1.w(0, k), 0.25);
  for (int k = 1; k < 4; ++k) EXPECT_NEAR(t1.w(1, k), 1.0 / 3.0, 1e-15);
  EXPECT_EQ(t1.w(2, 0), 0.5);
  EXPECT_EQ(t1.w(2, 2), 0.5);
  // No tie: the k most probable, as always.
  EXPECT_EQ(selected_experts(t1, 3), (experts{1}));
  EXPECT_EQ(selected_experts(t2, 3), (experts{1, 2}));
  EXPECT_EQ(t1.w(3, 1), 1.0);
  // A zero-probability boundary is not extended: top-2 keeps its second pick (weight 0) only.
  EXPECT_EQ(selected_experts(t2, 4), (experts{0, 1}));
  EXPECT_EQ(t2.w(4, 0), 1.0);
  EXPECT_EQ(selected_experts(t1, 4), (experts{0}));

  // top-p: the nucleus reaches p with experts 0 and 1 of the first row, whose boundary ties 2, 3.
  const auto nucleus = run(ddm::top_p{0.5}, p);
  EXPECT_EQ(selected_experts(nucleus, 0), (experts{0, 1, 2, 3}));
  EXPECT_EQ(selected_experts(nucleus, 2), (experts{0, 2}));
  EXPECT_EQ(selected_experts(nucleus, 3), (experts{1, 2}));
  // threshold and full_ensemble: the always-kept top expert brings the experts tied with it.
  const auto floor = run(ddm::threshold{0.6}, p);
  EXPECT_EQ(selected_experts(floor, 1), (experts{1, 2, 3}));
  EXPECT_EQ(selected_experts(floor, 2), (experts{0, 2}));
  EXPECT_EQ(selected_experts(floor, 3), (experts{1}));
  EXPECT_EQ(floor.w(2, 2), 0.5);
  const auto full = run(ddm::full_ensemble{0.6}, p);
  EXPECT_EQ(selected_experts(full, 2), (experts{0, 2}));
  EXPECT_EQ(full.w(2, 0), 0.4);  // not renormalized
  EXPECT_EQ(selected_experts(full, 3), (experts{1}));

  // The raw per-row function gives the same answer (it is what device kernels run).
  const double row[4] = {0.1, 0.3, 0.3, 0.3};
  double w[4];
  std::uint8_t sel[4];
  ASSERT_TRUE(ddm::top_k_row(row, 4, 2, w, sel));
  EXPECT_EQ((experts{sel[0], sel[1], sel[2], sel[3]}), (experts{0, 1, 1, 1}));
}

// The rule does not depend on the experts' order: permuting the experts permutes the decision.
TEST(Policies, TheTieRuleIsPermutationEquivariant) {
  const auto p = tied_rows();
  const int perm[4] = {2, 0, 3, 1};
  ddm::batch<double> q(p.rows(), 4);
  for (ddm::index_t r = 0; r < p.rows(); ++r)
    for (int k = 0; k < 4; ++k) q(r, perm[k]) = p(r, k);
  for (const ddm::any_routing_policy<double>& policy :
       {ddm::any_routing_policy<double>(ddm::top_1()), ddm::any_routing_policy<double>(ddm::top_2()),
        ddm::any_routing_policy<double>(ddm::top_p{0.5}), ddm::any_routing_policy<double>(ddm::threshold{0.6})}) {
    const auto a = run(policy, p);
    const auto b = run(policy, q);
    for (ddm::index_t r = 0; r < 4; ++r)  // row 4's zero-probability second pick is order-dependent
      for (int k = 0; k < 4; ++k) {
        EXPECT_EQ(a.sel(r, k), b.sel(r, perm[k])) << policy.name() << " row " << r;
        EXPECT_EQ(a.w(r, k), b.w(r, perm[k])) << policy.name() << " row " << r;
      }
  }
}

TEST(Policies, ScheduledSwitchesAtTStar) {
  const auto p = probabilities(1);
  const double t_star = 0.4;
  const ddm::scheduled early_full{t_star, ddm::full_ensemble{}, ddm::top_2()};
  const ddm::scheduled late_full{t_star, ddm::top_2(), ddm::full_ensemble{}};
  for (double t : {1.0, 0.7, std::nextafter(t_star, 1.0)}) {
    EXPECT_TRUE(early_full.is_early(t));
    EXPECT_EQ(count(run(early_full, p, t), 0), K) << t;
    EXPECT_EQ(count(run(late_full, p, t), 0), 2) << t;
  }
  for (double t : {t_star, std::nextafter(t_star, 0.0), 0.1, 0.0}) {
    EXPECT_FALSE(early_full.is_early(t));
    EXPECT_EQ(count(run(early_full, p, t), 0), 2) << t;
    EXPECT_EQ(count(run(late_full, p, t), 0), K) << t;
  }
  // The per-row form switches the same way.
  double w[K];
  std::uint8_t sel[K];
  int n = 0;
  ASSERT_TRUE(early_full.apply_row(p.cview().row(0), static_cast<int>(K), 0.9, w, sel));
  for (auto s : sel) n += s;
  EXPECT_EQ(n, K);
  EXPECT_EQ(early_full.name(), "scheduled(t > 0.4: full_ensemble; t <= 0.4: top_2)");
}

TEST(Policies, AnyRoutingPolicyBehavesLikeTheHeldPolicy) {
  const auto p = probabilities(13);
  std::vector<ddm::any_routing_policy<double>> policies{ddm::top_1(), ddm::top_2(), ddm::full_ensemble{},
                                                        ddm::top_p{0.9}, ddm::threshold{0.1},
                                                        ddm::scheduled{0.5, ddm::full_ensemble{}, ddm::top_2()}};
  const auto direct = run(ddm::top_2(), p);
  const auto erased = run(policies[1], p);
  for (ddm::index_t r = 0; r < B; ++r)
    for (ddm::index_t k = 0; k < K; ++k) {
      EXPECT_EQ(direct.w(r, k), erased.w(r, k));
      EXPECT_EQ(direct.sel(r, k), erased.sel(r, k));
    }
  EXPECT_EQ(policies[0].name(), "top_1");
  EXPECT_EQ(policies[2].name(), "full_ensemble");
  EXPECT_EQ(policies[4].name(), "threshold(0.1)");
  EXPECT_EQ(policies[3].name(), "top_p(0.9)");
  EXPECT_EQ(ddm::full_ensemble{1e-6}.name(), "full_ensemble(p >= 1e-06)");
  for (const auto& pol : policies) {
    const auto d = run(pol, p);
    for (ddm::index_t r = 0; r < B; ++r) EXPECT_GE(count(d, r), 1) << pol.name();
  }
}

TEST(Policies, ArgumentErrorsSayWhatWasExpected) {
  const auto message = [](auto&& f) { return ddm::test::error_message<ddm::argument_error>(f); };
  EXPECT_NE(message([] { (void)ddm::top_k{0}; }).find("'k' = 0"), std::string::npos);
  EXPECT_NE(message([] { (void)ddm::top_k{-3}; }).find(">= 1"), std::string::npos);
  const auto p = probabilities();
  const std::string too_many = message([&] { run(ddm::top_k{9}, p); });
  EXPECT_NE(too_many.find("k = 9"), std::string::npos) << too_many;
  EXPECT_NE(too_many.find("1 <= k <= 8"), std::string::npos) << too_many;
  for (double bad : {0.0, -0.1, 1.5, std::nan("")})
    EXPECT_NE(message([&] { (void)ddm::top_p{bad}; }).find("(0, 1]"), std::string::npos) << bad;
  EXPECT_THROW((void)ddm::threshold{-0.1}, ddm::argument_error);
  EXPECT_THROW((void)ddm::full_ensemble{1.5}, ddm::argument_error);
  EXPECT_THROW((ddm::scheduled{1.5, ddm::top_1(), ddm::top_2()}), ddm::argument_error);
  // Probabilities that are not probabilities: named by row.
  auto q = probabilities();
  q(5, 2) = -0.5;
  const std::string invalid = message([&] { run(ddm::top_2(), q); });
  EXPECT_NE(invalid.find("top_2"), std::string::npos) << invalid;
  EXPECT_NE(invalid.find("row 5"), std::string::npos) << invalid;
  // Shapes.
  ddm::batch<double> w(B, K + 1);
  ddm::batch<std::uint8_t> sel(B, K);
  EXPECT_THROW(ddm::top_2().select(ctx, p.cview(), 0.5, w.view(), sel.view()), ddm::shape_error);
}

// The per-row functions are public and run unchecked in device kernels: top_k_row with k outside
// [1, K] refuses the row instead of picking a (K+1)-th expert at index -1. The guard cells around
// the row must be left alone.
TEST(Policies, TopKRowRefusesKOutsideOneToK) {
  const double p[4] = {0.1, 0.4, 0.3, 0.2};
  double w_buf[6] = {-7, -7, -7, -7, -7, -7};
  std::uint8_t sel_buf[6] = {9, 9, 9, 9, 9, 9};
  for (int k : {0, 5, -1}) {
    EXPECT_FALSE(ddm::top_k_row(p, 4, k, w_buf + 1, sel_buf + 1)) << k;
    EXPECT_FALSE(ddm::top_k{1}.apply_row(p, 0, 0.5, w_buf + 1, sel_buf + 1));
  }
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(sel_buf[i], 9) << i;
    EXPECT_EQ(w_buf[i], -7.0) << i;
  }
  ASSERT_TRUE(ddm::top_k_row(p, 4, 4, w_buf + 1, sel_buf + 1));
  EXPECT_EQ(sel_buf[0], 9);
  EXPECT_EQ(sel_buf[5], 9);
}

}  // namespace
