// The registry: an integrator chosen by name samples exactly as its type does; a policy read back
// from its own name (or from a command line's short form) selects the same experts with the same
// weights as the policy itself, through select() and through the per-row code a kernel runs; bad
// names are refused with the known ones listed.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <ddm/ddm.hpp>

#include "support/same_bits.hpp"

namespace {

const ddm::host_context ctx{};

using ddm::test::same_bits;

// ---------------------------------------------------------------------------------------------
// Integrators

// A nonlinear field, so that methods of different orders give different samples.
struct bent_field {
  void operator()(ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t c = 0; c < x.cols(); ++c) v(r, c) = -x(r, c) + t * std::sin(3.0 * x(r, c));
  }
};

template <class Integrator>
ddm::batch<double> sample_with(const Integrator& integ) {
  ddm::batch<double> x(16, 3);
  ddm::fill_normal(ctx, x.view(), 7);
  bent_field f;
  (void)ddm::sample(f, x.view(), ddm::schedules::uniform(12), integ);
  return x;
}

template <class... I>
void check_by_name(ddm::integrator_list<I...> /*list*/) {
  (
      [] {
        const auto by_type = sample_with(I{});
        const auto by_name = ddm::with_integrator(I::name(), [](const auto& integ) { return sample_with(integ); });
        EXPECT_TRUE(same_bits(by_type.cview(), by_name.cview())) << I::name();
      }(),
      ...);
}

TEST(IntegratorRegistry, EveryIntegratorByItsNameSamplesAsItsType) { check_by_name(ddm::builtin_integrators{}); }

TEST(IntegratorRegistry, NamesAreTheTypesOwnAndDistinct) {
  const auto names = ddm::integrator_names();
  EXPECT_EQ(names, (std::vector<std::string>{"euler", "ddim", "heun", "dpm++1", "dpm++2m", "dpm++2s", "dpm++3m", "bs32",
                                             "dopri5"}));
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size());
  for (const auto& n : names)
    EXPECT_EQ(ddm::with_integrator(n, [](const auto& integ) { return ddm::name_of(integ); }), n);
}

TEST(IntegratorRegistry, TheNameSelectsTheMethod) {
  // Different orders: heun's samples differ from euler's (the registry does not hand out one type).
  const auto e = ddm::with_integrator("euler", [](const auto& i) { return sample_with(i); });
  const auto h = ddm::with_integrator("heun", [](const auto& i) { return sample_with(i); });
  EXPECT_FALSE(same_bits(e.cview(), h.cview()));
  EXPECT_EQ(ddm::with_integrator("dpm++3m", [](const auto& i) { return std::remove_cvref_t<decltype(i)>::order; }), 3);
}

TEST(IntegratorRegistry, AnUnknownNameListsTheKnownOnes) {
  try {
    ddm::with_integrator("dpm2m", [](const auto&) {});
    FAIL() << "no error";
  } catch (const ddm::argument_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'dpm2m'"), std::string::npos) << m;
    for (const auto& n : ddm::integrator_names()) EXPECT_NE(m.find(n), std::string::npos) << m;
  }
  // A shorter list: only its names are accepted and listed.
  const ddm::integrator_list<ddm::euler, ddm::heun> two;
  EXPECT_EQ(ddm::with_integrator("heun", [](const auto& i) { return ddm::name_of(i); }, two), "heun");
  try {
    ddm::with_integrator("dopri5", [](const auto&) {}, two);
    FAIL() << "no error";
  } catch (const ddm::argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("expected one of euler, heun"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Policies

constexpr ddm::index_t B = 48;
constexpr ddm::index_t K = 6;

// Softmax rows of varied sharpness, and rows with exact ties (uniform, a tied top pair, a tied
// runner-up pair) where the tie rule decides.
ddm::batch<double> probabilities() {
  ddm::batch<double> l(B, K), p(B, K);
  ddm::fill_normal(ctx, l.view(), 11);
  for (ddm::index_t r = 0; r < B; ++r)
    for (ddm::index_t k = 0; k < K; ++k) l(r, k) *= 0.2 + 4.0 * static_cast<double>(r) / B;
  ddm::softmax_rows(ctx, l.cview(), 1.0, p.view());
  for (ddm::index_t k = 0; k < K; ++k) {
    p(0, k) = 1.0 / K;
    p(1, k) = k < 2 ? 0.3 : 0.1;
    p(2, k) = k == 3 ? 0.4 : (k == 1 || k == 4 ? 0.2 : 0.2 / 3);
  }
  return p;
}

struct decision {
  ddm::batch<double> w{B, K};
  ddm::batch<std::uint8_t> sel{B, K};
};

template <class Policy>
decision by_select(const Policy& policy, const ddm::batch<double>& p, double t) {
  decision d;
  policy.select(ctx, p.cview(), t, d.w.view(), d.sel.view());
  return d;
}

// What a kernel runs: apply_row over the rows.
template <class Policy>
decision by_rows(const Policy& policy, const ddm::batch<double>& p, double t) {
  decision d;
  ddm::run_policy(ctx, policy, p.cview(), t, d.w.view(), d.sel.view());
  return d;
}

void expect_same(const decision& a, const decision& b, const std::string& what) {
  EXPECT_TRUE(same_bits(a.w.cview(), b.w.cview())) << what;
  EXPECT_TRUE(same_bits(a.sel.cview(), b.sel.cview())) << what;
}

const auto every_policy = std::make_tuple(
    ddm::top_1(), ddm::top_2(), ddm::top_k{3}, ddm::top_k{6}, ddm::full_ensemble{}, ddm::full_ensemble{1e-6},
    ddm::full_ensemble{0.05}, ddm::top_p{0.9}, ddm::top_p{1.0}, ddm::threshold{0.05}, ddm::confidence_adaptive{0.7},
    ddm::ratio_gated{0.5}, ddm::scheduled{0.5, ddm::full_ensemble{}, ddm::top_2()},
    ddm::scheduled{0.3, ddm::top_2(), ddm::top_1()}, ddm::scheduled{0.25, ddm::confidence_adaptive{0.6}, ddm::ratio_gated{0.25}},
    ddm::scheduled{0.7, ddm::top_p{0.8}, ddm::threshold{0.1}}, ddm::scheduled{0.4, ddm::top_k{3}, ddm::full_ensemble{0.01}});

TEST(PolicyRegistry, EveryPolicyReadBackFromItsNameSelectsAsItself) {
  const auto p = probabilities();
  std::apply(
      [&](const auto&... policy) {
        (
            [&] {
              const std::string name = ddm::name_of(policy);
              const ddm::builtin_policy back = ddm::policy_by_name(name);
              EXPECT_EQ(ddm::name_of(back), name);
              for (double t : {1.0, 0.9, 0.5, 0.3, 0.2, 0.0}) {
                const std::string what = name + " at t = " + std::to_string(t);
                expect_same(by_select(policy, p, t), by_select(back, p, t), what + " (select)");
                expect_same(by_select(policy, p, t), by_rows(back, p, t), what + " (apply_row)");
              }
            }(),
            ...);
      },
      every_policy);
}

TEST(PolicyRegistry, TheShortFormsNameTheSamePolicies) {
  const std::vector<std::pair<std::string, std::string>> pairs{
      {"top1", "top_1"},
      {"top2", "top_2"},
      {"topk:3", "top_3"},
      {"full", "full_ensemble"},
      {"full:1e-6", "full_ensemble(p >= 1e-06)"},
      {"top_p:0.9", "top_p(0.9)"},
      {"threshold:0.05", "threshold(0.05)"},
      {"confidence:0.7", "confidence_adaptive(0.7)"},
      {"ratio:0.5", "ratio_gated(0.5)"},
      {"full_then_top2", "scheduled(t > 0.5: full_ensemble; t <= 0.5: top_2)"},
      {"top2_then_top1@0.3", "scheduled(t > 0.3: top_2; t <= 0.3: top_1)"},
      {"confidence:0.6_then_ratio:0.25@0.25", "scheduled(t > 0.25: confidence_adaptive(0.6); t <= 0.25: ratio_gated(0.25))"},
  };
  const auto p = probabilities();
  for (const auto& [spec, name] : pairs) {
    const auto a = ddm::policy_by_name(spec);
    EXPECT_EQ(ddm::name_of(a), name) << spec;
    for (double t : {0.9, 0.3, 0.1}) expect_same(by_select(a, p, t), by_select(ddm::policy_by_name(name), p, t), spec);
  }
  // A schedule without @S switches at the caller's default.
  EXPECT_EQ(ddm::name_of(ddm::policy_by_name("top2_then_top1", 0.2)), "scheduled(t > 0.2: top_2; t <= 0.2: top_1)");
  // top2_then_top1 is top-2 early and top-1 late: it costs two experts a row before the switch, one after.
  const auto s = ddm::policy_by_name("top2_then_top1@0.5");
  const auto early = by_select(s, p, 0.8);
  const auto late = by_select(s, p, 0.5);
  expect_same(early, by_select(ddm::top_2(), p, 0.8), "early");
  expect_same(late, by_select(ddm::top_1(), p, 0.5), "late");
}

TEST(PolicyRegistry, ABuiltinPolicyRoutesAFieldAsItsPolicyDoes) {
  ddm::synthetic::analytic_ddm_options o;
  o.clusters = 4;
  o.dim = 3;
  const ddm::synthetic::analytic_ddm model(o);
  auto run = [&](const auto& policy) {
    auto field = ddm::make_routed_field<double>(model.experts(), model.router(2.0), policy);
    ddm::batch<double> x(32, 3);
    ddm::fill_normal(ctx, x.view(), 3);
    (void)ddm::sample(field, x.view(), ddm::schedules::uniform(8), ddm::heun{});
    return std::make_pair(std::move(x), field.expert_evaluations());
  };
  const auto [a, na] = run(ddm::scheduled{0.5, ddm::top_2(), ddm::top_1()});
  const auto [b, nb] = run(ddm::policy_by_name("top2_then_top1@0.5"));
  EXPECT_TRUE(same_bits(a.cview(), b.cview()));
  EXPECT_EQ(na, nb);
  // And as any_routing_policy, like every policy.
  const auto [c, nc] = run(ddm::any_routing_policy<double>(ddm::policy_by_name("top2_then_top1@0.5")));
  EXPECT_TRUE(same_bits(a.cview(), c.cview()));
  EXPECT_EQ(na, nc);
}

std::string error_of(const std::string& spec) {
  try {
    (void)ddm::policy_by_name(spec);
  } catch (const ddm::argument_error& e) {
    return e.what();
  }
  return "no error";
}

TEST(PolicyRegistry, BadSpecsAreNamedWithWhatWasExpected) {
  for (const std::string spec : {"top", "topx", "dpm", "", "full_ensemble(p >= x)", "top1@0.3"}) {
    const auto m = error_of(spec);
    EXPECT_NE(m.find("argument 'spec' = '" + spec + "'"), std::string::npos) << m;
    for (const auto& form : ddm::policy_spec_forms()) EXPECT_NE(m.find(form), std::string::npos) << m;
  }
  // Out of range: the policy's own error, with the spec.
  EXPECT_NE(error_of("top0").find("'top0': ddm::top_k: argument 'k' = 0"), std::string::npos) << error_of("top0");
  EXPECT_NE(error_of("confidence:1.5").find("ddm::confidence_adaptive: argument 'confidence' = 1.5"), std::string::npos);
  EXPECT_NE(error_of("top2_then_top1@2").find("ddm::scheduled: argument 't_switch' = 2"), std::string::npos);
  // Schedules of schedules have no name form.
  EXPECT_NE(error_of("top1_then_top2_then_full@0.3").find("schedule of schedules"), std::string::npos);
  EXPECT_NE(error_of(ddm::name_of(ddm::scheduled{0.5, ddm::top_1(), ddm::scheduled{0.2, ddm::top_2(), ddm::top_1()}}))
                .find("schedule of schedules"),
            std::string::npos);
  EXPECT_NE(error_of("scheduled(t > 0.5: top_1; t <= 0.4: top_2)").find("one S twice"), std::string::npos);
}

}  // namespace
