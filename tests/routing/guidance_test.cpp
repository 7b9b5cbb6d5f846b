// Classifier-free guidance: the combination formula, conditioning pass-through, exact jvp, and
// guidance inside each expert commuting with routing (the weights do not depend on the experts).

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include <ddm/ddm.hpp>

#include "support/gaussian_flow.hpp"

namespace {

const ddm::host_context ctx{};

// A "conditional" field: v = x * t + label(row), with label(i) = 0.1 * original row index.
struct labelled {
  double bias;
  void operator()(ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t c = 0; c < x.cols(); ++c) v(r, c) = x(r, c) * t + bias + 0.1 * static_cast<double>(r);
  }
  void operator()(ddm::batch_view<const double> x, double t, ddm::batch_view<double> v, ddm::row_index_view<> rows) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t c = 0; c < x.cols(); ++c) v(r, c) = x(r, c) * t + bias + 0.1 * rows(r, 0);
  }
};

TEST(Guidance, CombinesUnconditionalAndConditional) {
  ddm::test::gaussian_flow u{{0.0, 0.0, 0.0}, 1.0};
  ddm::test::gaussian_flow c{{1.0, -1.0, 2.0}, 0.3};
  ddm::batch<double> x(4, 3), vu(4, 3), vc(4, 3), v(4, 3);
  ddm::fill_normal(ctx, x.view(), 3);
  const double t = 0.45;
  u(x.cview(), t, vu.view());
  c(x.cview(), t, vc.view());
  for (double s : {0.0, 1.0, 3.0, 7.5}) {
    ddm::guided_field g(u, c, s);
    g(x.cview(), t, v.view());
    for (ddm::index_t r = 0; r < 4; ++r)
      for (ddm::index_t j = 0; j < 3; ++j) EXPECT_NEAR(v(r, j), vu(r, j) + s * (vc(r, j) - vu(r, j)), 1e-13) << s;
  }
  EXPECT_THROW(ddm::guided_field(u, c, std::nan("")), ddm::argument_error);
}

TEST(Guidance, PassesRowIndicesThroughAndOffersJvp) {
  ddm::guided_field g(labelled{0.0}, labelled{1.0}, 2.0);
  static_assert(ddm::conditioned_velocity_field<decltype(g), double>);
  ddm::batch<double> x(3, 2), v(3, 2);
  const std::int32_t idx[3] = {10, 20, 30};
  g(x.cview(), 0.5, v.view(), ddm::row_index_view<>(idx, 3, 1));
  // (1 - s) * (0 + 0.1 i) + s * (1 + 0.1 i) = s + 0.1 i
  EXPECT_NEAR(v(1, 0), 2.0 + 2.0, 1e-14);
  EXPECT_NEAR(v(2, 1), 2.0 + 3.0, 1e-14);

  ddm::guided_field h(ddm::test::gaussian_flow{{0.0}, 1.0}, ddm::test::gaussian_flow{{1.0}, 0.5}, 3.0);
  static_assert(ddm::has_jvp<decltype(h), double>);
  ddm::batch<double> y(2, 1), u(2, 1), out(2, 1);
  ddm::fill(ctx, u.view(), 1.0);
  h.jvp(y.cview(), 0.3, u.cview(), out.view());
  auto slope = [](double s, double t) {
    const double var = (1 - t) * (1 - t) * s * s + t * t;
    return (t - (1 - t) * s * s) / var;
  };
  EXPECT_NEAR(out(0, 0), -2.0 * slope(1.0, 0.3) + 3.0 * slope(0.5, 0.3), 1e-14);
}

// Weights come from the router alone, so guiding each expert then routing equals routing the
// unconditional and conditional ensembles and guiding the result.
TEST(Guidance, GuidanceInsideExpertsCommutesWithRouting) {
  constexpr ddm::index_t K = 4;
  auto router = ddm::router_fn(K, "sines", [](ddm::batch_view<const double> x, double t, ddm::batch_view<double> l) {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t k = 0; k < K; ++k) l(r, k) = 3 * std::sin(x(r, 0) * static_cast<double>(k + 1) + t);
  });
  std::vector<ddm::guided_field<ddm::test::gaussian_flow, ddm::test::gaussian_flow>> guided;
  std::vector<ddm::test::gaussian_flow> uncond, cond;
  for (int k = 0; k < K; ++k) {
    uncond.push_back({{0.1 * k, -0.2 * k}, 0.5 + 0.1 * k});
    cond.push_back({{1.0 - k, 0.5 * k}, 0.3});
    guided.emplace_back(uncond.back(), cond.back(), 4.0);
  }
  auto inside = ddm::make_routed_field<double>(ddm::expert_vector(std::move(guided)), router, ddm::top_2());
  ddm::guided_field outside(ddm::make_routed_field<double>(ddm::expert_vector(uncond), router, ddm::top_2()),
                            ddm::make_routed_field<double>(ddm::expert_vector(cond), router, ddm::top_2()), 4.0);
  ddm::batch<double> x(25, 2), a(25, 2), b(25, 2);
  ddm::fill_normal(ctx, x.view(), 8);
  for (double t : {0.9, 0.5, 0.05}) {
    inside(x.cview(), t, a.view());
    outside(x.cview(), t, b.view());
    EXPECT_LT(ddm::test::max_abs_diff(a.cview(), b.cview()), 1e-12) << t;
  }
}

}  // namespace
