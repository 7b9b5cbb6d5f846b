// The gated policies (confidence_adaptive, ratio_gated): each row's decision is top-1's or top-2's
// as the gate says, the tie rule holds, the cost lies between top-1's and top-2's, and bad
// arguments are named.

#include <gtest/gtest.h>

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
ddm::batch<double> probabilities(std::uint64_t seed) {
  return ddm::test::router_probabilities(B, K, seed);
}

struct decision {
  ddm::batch<double> w;
  ddm::batch<std::uint8_t> sel;
};

template <class Policy>
decision run(const Policy& policy, const ddm::batch<double>& p) {
  decision d{ddm::batch<double>(p.rows(), p.cols()), ddm::batch<std::uint8_t>(p.rows(), p.cols())};
  policy.select(ctx, p.cview(), 0.5, d.w.view(), d.sel.view());
  return d;
}

// The largest and second largest probability of row r.
std::pair<double, double> top_two(const ddm::batch<double>& p, ddm::index_t r) {
  double a = -1, b = -1;
  for (ddm::index_t k = 0; k < p.cols(); ++k) {
    if (p(r, k) > a) {
      b = a;
      a = p(r, k);
    } else if (p(r, k) > b) {
      b = p(r, k);
    }
  }
  return {a, b};
}

void expect_same_row(const decision& a, const decision& b, ddm::index_t r, const std::string& what) {
  for (ddm::index_t k = 0; k < a.w.cols(); ++k) {
    EXPECT_EQ(a.sel(r, k), b.sel(r, k)) << what << " row " << r << " expert " << k;
    EXPECT_EQ(a.w(r, k), b.w(r, k)) << what << " row " << r << " expert " << k;
  }
}

TEST(GatedPolicies, ConfidenceAdaptiveIsTopOneWhereSureAndTopTwoElsewhere) {
  const auto p = probabilities(21);
  const auto one = run(ddm::top_1(), p);
  const auto two = run(ddm::top_2(), p);
  for (double c : {0.0, 0.3, 0.5, 0.7, 0.9, 1.0}) {
    const ddm::confidence_adaptive policy{c};
    const auto d = run(policy, p);
    int ones = 0;
    for (ddm::index_t r = 0; r < B; ++r) {
      const bool sure = top_two(p, r).first >= c;
      ones += sure ? 1 : 0;
      expect_same_row(d, sure ? one : two, r, policy.name());
    }
    if (c == 0.0) {
      EXPECT_EQ(ones, B);  // every row: top-1
    }
    if (c == 1.0) {
      EXPECT_EQ(ones, 0);  // no row has all its mass on one expert here: top-2
    }
    if (c == 0.7) {
      EXPECT_GT(ones, 0) << "the rows span both cases";
      EXPECT_LT(ones, B) << "the rows span both cases";
    }
  }
}

TEST(GatedPolicies, RatioGatedAddsTheRunnerUpOnlyWhenItIsClose) {
  const auto p = probabilities(22);
  const auto one = run(ddm::top_1(), p);
  const auto two = run(ddm::top_2(), p);
  for (double ratio : {0.0, 0.2, 0.5, 0.8, 1.0}) {
    const ddm::ratio_gated policy{ratio};
    const auto d = run(policy, p);
    for (ddm::index_t r = 0; r < B; ++r) {
      const auto [p1, p2] = top_two(p, r);
      const bool close = p2 >= ratio * p1;
      if (ratio == 0.0) {
        EXPECT_TRUE(close);
      }
      expect_same_row(d, close ? two : one, r, policy.name());
    }
  }
}

TEST(GatedPolicies, TiesAreSplitAsByEveryPolicy) {
  ddm::batch<double> p(3, 4);
  const double rows[3][4] = {{0.5, 0.5, 0.0, 0.0}, {0.4, 0.3, 0.3, 0.0}, {0.2, 0.4, 0.2, 0.2}};
  for (ddm::index_t r = 0; r < 3; ++r)
    for (ddm::index_t k = 0; k < 4; ++k) p(r, k) = rows[r][k];
  auto chosen = [](const decision& d, ddm::index_t r) {
    std::vector<int> s;
    for (ddm::index_t k = 0; k < 4; ++k)
      if (d.sel(r, k)) s.push_back(static_cast<int>(k));
    return s;
  };
  using v = std::vector<int>;
  const auto sure = run(ddm::confidence_adaptive{0.1}, p);  // top-1 on every row
  EXPECT_EQ(chosen(sure, 0), (v{0, 1}));
  EXPECT_EQ(sure.w(0, 0), 0.5);
  EXPECT_EQ(chosen(sure, 1), (v{0}));
  EXPECT_EQ(chosen(sure, 2), (v{1}));
  const auto unsure = run(ddm::confidence_adaptive{0.9}, p);  // top-2 on every row
  EXPECT_EQ(chosen(unsure, 1), (v{0, 1, 2}));                // the runner-up is tied
  EXPECT_EQ(chosen(unsure, 2), (v{0, 1, 2, 3}));
  EXPECT_NEAR(unsure.w(2, 1), 0.4, 1e-15);
  EXPECT_EQ(chosen(run(ddm::ratio_gated{0.5}, p), 1), (v{0, 1, 2}));
  EXPECT_EQ(chosen(run(ddm::ratio_gated{0.8}, p), 1), (v{0}));
  EXPECT_EQ(chosen(run(ddm::ratio_gated{1.0}, p), 0), (v{0, 1}));
  // One expert: the gate has no runner-up to add.
  const double single[1] = {1.0};
  double w[1];
  std::uint8_t sel[1];
  ASSERT_TRUE(ddm::confidence_adaptive{1.0}.apply_row(single, 1, 0.5, w, sel));
  EXPECT_EQ(sel[0], 1);
  ASSERT_TRUE(ddm::ratio_gated{0.0}.apply_row(single, 1, 0.5, w, sel));
  EXPECT_EQ(w[0], 1.0);
}

// In a routed field over the analytic DDM, the gated policies cost at least top-1 and at most
// top-2, and their cost grows with the gate's threshold.
TEST(GatedPolicies, CostLiesBetweenTopOneAndTopTwo) {
  const ddm::synthetic::analytic_ddm model;
  auto evaluations = [&](auto policy) {
    auto field = ddm::make_routed_field<double>(model.experts(), model.router(2.0), policy);
    ddm::batch<double> x(256, model.dim()), v(256, model.dim());
    ddm::fill_normal(ctx, x.view(), 5);
    for (double t : {0.9, 0.6, 0.3, 0.05}) field(x.cview(), t, v.view());
    std::printf("[ measured ] %-26s expert row evaluations %5zu, relative cost %.3f\n", policy.name().c_str(),
                field.expert_evaluations(), field.relative_cost());
    return field.expert_evaluations();
  };
  const auto one = evaluations(ddm::top_1());
  const auto two = evaluations(ddm::top_2());
  std::size_t previous = one;
  for (double c : {0.5, 0.7, 0.9}) {
    const auto n = evaluations(ddm::confidence_adaptive{c});
    EXPECT_GE(n, previous) << c;
    EXPECT_LE(n, two) << c;
    previous = n;
  }
  previous = two;
  for (double r : {0.1, 0.3, 0.6}) {
    const auto n = evaluations(ddm::ratio_gated{r});
    EXPECT_LE(n, previous) << r;
    EXPECT_GE(n, one) << r;
    previous = n;
  }
}

TEST(GatedPolicies, ArgumentErrorsSayWhatWasExpected) {
  const auto message = [](auto&& f) { return ddm::test::error_message<ddm::argument_error>(f); };
  for (double bad : {-0.1, 1.5, std::nan("")}) {
    const std::string c = message([&] { (void)ddm::confidence_adaptive{bad}; });
    EXPECT_NE(c.find("'confidence' = "), std::string::npos) << c;
    EXPECT_NE(c.find("[0, 1]"), std::string::npos) << c;
    const std::string r = message([&] { (void)ddm::ratio_gated{bad}; });
    EXPECT_NE(r.find("'ratio' = "), std::string::npos) << r;
    EXPECT_NE(r.find("[0, 1]"), std::string::npos) << r;
  }
  EXPECT_NE(message([] { (void)ddm::ratio_gated{2.0}; }).find("= 2"), std::string::npos);
  auto q = probabilities(23);
  q(7, 3) = std::nan("");
  const std::string invalid = message([&] { run(ddm::confidence_adaptive{0.5}, q); });
  EXPECT_NE(invalid.find("confidence_adaptive(0.5)"), std::string::npos) << invalid;
  EXPECT_NE(invalid.find("row 7"), std::string::npos) << invalid;
  ddm::batch<double> w(B, K);
  ddm::batch<std::uint8_t> sel(B + 1, K);
  EXPECT_THROW(ddm::ratio_gated{0.5}.select(ctx, q.cview(), 0.5, w.view(), sel.view()), ddm::shape_error);
  EXPECT_EQ(ddm::ratio_gated{0.25}.name(), "ratio_gated(0.25)");
  const ddm::any_routing_policy<double> erased = ddm::confidence_adaptive{0.8};
  EXPECT_EQ(erased.name(), "confidence_adaptive(0.8)");
}

}  // namespace
