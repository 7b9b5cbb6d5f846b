// Routers and policies of one's own: the one name() rule (anything string-like), policy_fn
// against the built-in policy it re-implements, and the checks policy_fn runs around a callable.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <ddm/ddm.hpp>

namespace {

const ddm::host_context ctx{};
constexpr ddm::index_t B = 32;
constexpr ddm::index_t K = 4;

// Logits that favour expert (row mod K), more sharply as t falls.
template <class Name>
struct rotating_router {
  Name label;
  [[nodiscard]] std::size_t num_experts() const { return K; }
  [[nodiscard]] Name name() const { return label; }
  void operator()(ddm::batch_view<const double> x, double t, ddm::batch_view<double> logits) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t k = 0; k < K; ++k) logits(r, k) = (k == r % K ? 2.0 : 0.0) / (0.5 + t) + 0.1 * x(r, 0);
  }
};

static_assert(ddm::router<rotating_router<const char*>, double>);
static_assert(ddm::router<rotating_router<std::string>, double>);
static_assert(ddm::router<rotating_router<std::string_view>, double>);
static_assert(!ddm::router<rotating_router<int>, double>);
static_assert(ddm::routing_policy<ddm::top_k, double> && ddm::named<ddm::top_k>);

ddm::batch<double> probabilities() {
  ddm::batch<double> l(B, K), p(B, K);
  ddm::fill_normal(ctx, l.view(), 11);
  ddm::softmax_rows(ctx, l.cview(), 1.0, p.view());
  return p;
}

// Top-1 written as a callable: the most probable expert, ties to the lower index, weight 1.
auto own_top1 = ddm::policy_fn("own_top1", [](ddm::batch_view<const double> p, double, ddm::batch_view<double> w,
                                              ddm::batch_view<std::uint8_t> sel) {
  for (ddm::index_t r = 0; r < p.rows(); ++r) {
    ddm::index_t best = 0;
    for (ddm::index_t k = 1; k < p.cols(); ++k)
      if (p(r, k) > p(r, best)) best = k;
    for (ddm::index_t k = 0; k < p.cols(); ++k) {
      sel(r, k) = k == best ? 1 : 0;
      w(r, k) = k == best ? 1.0 : 0.0;
    }
  }
});

TEST(CustomComponents, EveryStringLikeNameRoutesTheSame) {
  auto run = [&](auto router) {
    std::vector<ddm::any_velocity_field<double>> list;
    for (ddm::index_t k = 0; k < K; ++k)
      list.emplace_back([k](ddm::batch_view<const double> x, double, ddm::batch_view<double> v) {
        for (ddm::index_t r = 0; r < x.rows(); ++r)
          for (ddm::index_t c = 0; c < x.cols(); ++c) v(r, c) = x(r, c) - static_cast<double>(k);
      });
    auto field = ddm::make_routed_field<double>(ddm::expert_vector<ddm::any_velocity_field<double>>(std::move(list)),
                                                std::move(router), ddm::top_2());
    ddm::batch<double> x(B, 3);
    ddm::fill_normal(ctx, x.view(), 5);
    const auto schedule = ddm::schedules::uniform(6);
    ddm::batch<double> centroids(K, 3);
    auto routing = ddm::diagnostics::make_routing_observer<double>(field, schedule, centroids.cview());
    ddm::sample(field, x, schedule, ddm::heun{}, routing);
    return x;
  };
  const auto a = run(rotating_router<const char*>{"rot"});
  const auto b = run(rotating_router<std::string>{"rot"});
  const auto c = run(rotating_router<std::string_view>{"rot"});
  for (ddm::index_t r = 0; r < B; ++r)
    for (ddm::index_t j = 0; j < 3; ++j) {
      EXPECT_EQ(a(r, j), b(r, j));
      EXPECT_EQ(a(r, j), c(r, j));
    }
}

TEST(CustomComponents, NameOfCopiesAnyStringLikeName) {
  EXPECT_EQ(ddm::name_of(rotating_router<std::string_view>{"sv"}), "sv");
  EXPECT_EQ(ddm::name_of(ddm::top_2()), "top_2");
  EXPECT_EQ(ddm::name_of(own_top1), "own_top1");
}

TEST(CustomComponents, PolicyFnTop1AgreesWithTop1) {
  const auto p = probabilities();
  ddm::batch<double> w1(B, K), w2(B, K);
  ddm::batch<std::uint8_t> s1(B, K), s2(B, K);
  own_top1.select(ctx, p.cview(), 0.5, w1.view(), s1.view());
  ddm::top_1().select(ctx, p.cview(), 0.5, w2.view(), s2.view());
  for (ddm::index_t r = 0; r < B; ++r)
    for (ddm::index_t k = 0; k < K; ++k) {
      EXPECT_EQ(s1(r, k), s2(r, k)) << "row " << r << ", expert " << k;
      EXPECT_DOUBLE_EQ(w1(r, k), w2(r, k)) << "row " << r << ", expert " << k;  // top_k renormalizes: p * (1 / p)
    }
}

TEST(CustomComponents, PolicyFnChecksItsOperandsAndTheCallablesOutput) {
  const auto p = probabilities();
  ddm::batch<double> w(B, K), wrong(B, K + 1);
  ddm::batch<std::uint8_t> s(B, K);
  EXPECT_THROW(own_top1.select(ctx, p.cview(), 0.5, wrong.view(), s.view()), ddm::shape_error);

  ddm::batch<double> bad = probabilities();
  bad(3, 1) = -0.25;
  EXPECT_THROW(own_top1.select(ctx, bad.cview(), 0.5, w.view(), s.view()), ddm::argument_error);

  auto selects_nothing = ddm::policy_fn("nothing", [](ddm::batch_view<const double>, double, ddm::batch_view<double> w_,
                                                      ddm::batch_view<std::uint8_t> s_) {
    ddm::fill(ctx, w_, 0.0);
    for (ddm::index_t r = 0; r < s_.rows(); ++r)
      for (ddm::index_t k = 0; k < s_.cols(); ++k) s_(r, k) = 0;
  });
  try {
    selects_nothing.select(ctx, p.cview(), 0.5, w.view(), s.view());
    FAIL() << "a row without a selected expert was accepted";
  } catch (const ddm::argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("'nothing': row 0 has no selected expert"), std::string::npos) << e.what();
  }

  auto nan_weight = ddm::policy_fn("nan", [](ddm::batch_view<const double>, double, ddm::batch_view<double> w_,
                                             ddm::batch_view<std::uint8_t> s_) {
    for (ddm::index_t r = 0; r < s_.rows(); ++r)
      for (ddm::index_t k = 0; k < s_.cols(); ++k) {
        s_(r, k) = 1;
        w_(r, k) = r == 2 && k == 3 ? std::nan("") : 0.25;
      }
  });
  try {
    nan_weight.select(ctx, p.cview(), 0.5, w.view(), s.view());
    FAIL() << "a NaN weight was accepted";
  } catch (const ddm::argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("weight (2, 3)"), std::string::npos) << e.what();
  }
}

TEST(CustomComponents, BuiltInChecksArePublic) {
  const auto p = probabilities();
  ddm::batch<double> w(B, K), wrong(B - 1, K);
  ddm::batch<std::uint8_t> s(B, K);
  EXPECT_NO_THROW(ddm::check_policy_operands(ddm::top_2(), p.cview(), w.view(), s.view()));
  EXPECT_THROW(ddm::check_policy_operands(ddm::top_2(), p.cview(), wrong.view(), s.view()), ddm::shape_error);
  ddm::batch<double> bad = probabilities();
  bad(0, 0) = std::nan("");
  EXPECT_THROW(ddm::run_policy(ctx, ddm::top_2(), bad.cview(), 0.5, w.view(), s.view()), ddm::argument_error);
}

}  // namespace
