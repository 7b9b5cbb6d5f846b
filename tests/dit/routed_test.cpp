// A Paris-layout folder as one routed velocity field: the routed result equals the combination
// computed by hand from the router's logits and the experts' velocities.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include <ddm/core/rng.hpp>
#include <ddm/routing/policy.hpp>

#include "dit/backend_host.hpp"
#include "dit/paris_routed.hpp"
#include "golden_support.hpp"

namespace {

using dit_test::fixture;

struct setup {
  dit::paris_checkpoint<ddm::host_space> ckpt = dit::load_paris(fixture("paris_tiny"));
  ddm::io::safetensors_file golden{fixture("paris_tiny/expert_0.golden.safetensors")};
  std::vector<float> x = golden.read<float>("input.x");
  std::shared_ptr<ddm::batch<float>> text;
  ddm::index_t b = 3;
  ddm::index_t n = ckpt.experts[0]->input_values();
  setup() {
    const auto values = golden.read<float>("input.text");
    text = std::make_shared<ddm::batch<float>>(b, ckpt.expert_config.text_values());
    std::copy(values.begin(), values.end(), text->data());
  }
  [[nodiscard]] ddm::batch_view<const float> xs() const { return {x.data(), b, n}; }

  // v_k(x, t) for every expert on the whole batch, and the router's probabilities.
  std::vector<ddm::batch<float>> expert_velocities(double t) {
    std::vector<ddm::batch<float>> vs;
    for (const auto& e : ckpt.experts) {
      dit::paris_expert_field<> f(e, text);
      vs.emplace_back(b, n);
      f(xs(), t, vs.back().view());
    }
    return vs;
  }
  std::vector<std::vector<double>> probabilities(double t) {
    dit::dit_router<> r(ckpt.router);
    ddm::batch<float> logits(b, 3);
    r(xs(), t, logits.view());
    std::vector<std::vector<double>> p(static_cast<std::size_t>(b), std::vector<double>(3));
    for (ddm::index_t i = 0; i < b; ++i) {
      double m = -1e300, s = 0;
      for (int k = 0; k < 3; ++k) m = std::max(m, double(logits(i, k)));
      for (int k = 0; k < 3; ++k) s += p[static_cast<std::size_t>(i)][static_cast<std::size_t>(k)] = std::exp(logits(i, k) - m);
      for (auto& v : p[static_cast<std::size_t>(i)]) v /= s;
    }
    return p;
  }
};

TEST(ParisRouted, TopTwoEqualsTheRenormalizedPairComputedByHand) {
  setup s;
  const double t = 0.55;
  auto field = dit::make_paris_field(s.ckpt, std::shared_ptr<const ddm::batch<float>>(s.text), ddm::top_2());
  ddm::batch<float> v(s.b, s.n);
  field(s.xs(), t, v.view());
  const auto vs = s.expert_velocities(t);
  const auto p = s.probabilities(t);
  double worst = 0;
  for (ddm::index_t i = 0; i < s.b; ++i) {
    const auto& pi = p[static_cast<std::size_t>(i)];
    std::vector<int> order{0, 1, 2};
    std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return pi[a] > pi[c]; });
    const double z = pi[order[0]] + pi[order[1]];
    for (ddm::index_t c = 0; c < s.n; ++c) {
      const double want = (pi[order[0]] * vs[order[0]](i, c) + pi[order[1]] * vs[order[1]](i, c)) / z;
      worst = std::max(worst, std::abs(v(i, c) - want));
    }
  }
  std::printf("[ measured ] routed top-2 vs hand combination: max abs %.2e\n", worst);
  EXPECT_LE(worst, 1e-5);
  // Two experts per row were evaluated, and no more.
  const auto rows = field.expert_rows();
  EXPECT_EQ(std::accumulate(rows.begin(), rows.end(), std::size_t{0}), 2u * static_cast<std::size_t>(s.b));
}

TEST(ParisRouted, FullEnsembleIsTheRouterWeightedSum) {
  setup s;
  const double t = 0.2;
  auto field = dit::make_paris_field(s.ckpt, std::shared_ptr<const ddm::batch<float>>(s.text), ddm::full_ensemble{});
  ddm::batch<float> v(s.b, s.n);
  field(s.xs(), t, v.view());
  const auto vs = s.expert_velocities(t);
  const auto p = s.probabilities(t);
  double worst = 0;
  for (ddm::index_t i = 0; i < s.b; ++i)
    for (ddm::index_t c = 0; c < s.n; ++c) {
      double want = 0;
      for (int k = 0; k < 3; ++k) want += p[static_cast<std::size_t>(i)][static_cast<std::size_t>(k)] * vs[static_cast<std::size_t>(k)](i, c);
      worst = std::max(worst, std::abs(v(i, c) - want));
    }
  EXPECT_LE(worst, 1e-5);
}

TEST(ParisRouted, GuidanceInsideEachExpert) {
  setup s;
  const double t = 0.8;
  const double scale = 3.0;
  auto uncond = std::make_shared<ddm::batch<float>>(1, s.ckpt.expert_config.text_values());
  ddm::fill_normal(ddm::host_context{}, uncond->view(), 9);
  auto guided = dit::make_paris_guided_field(s.ckpt, std::shared_ptr<const ddm::batch<float>>(s.text),
                                             std::shared_ptr<const ddm::batch<float>>(uncond), scale, ddm::top_1());
  ddm::batch<float> v(s.b, s.n);
  guided(s.xs(), t, v.view());
  const auto p = s.probabilities(t);
  double worst = 0;
  for (ddm::index_t i = 0; i < s.b; ++i) {
    const auto& pi = p[static_cast<std::size_t>(i)];
    const auto k = static_cast<std::size_t>(std::max_element(pi.begin(), pi.end()) - pi.begin());
    dit::paris_expert_field<> cond(s.ckpt.experts[k], s.text);
    dit::paris_expert_field<> unc(s.ckpt.experts[k], uncond);
    ddm::batch<float> vc(s.b, s.n), vu(s.b, s.n);
    cond(s.xs(), t, vc.view());
    unc(s.xs(), t, vu.view());
    for (ddm::index_t c = 0; c < s.n; ++c)
      worst = std::max(worst, std::abs(v(i, c) - (vu(i, c) + scale * (vc(i, c) - vu(i, c)))));
  }
  EXPECT_LE(worst, 1e-4);
}

}  // namespace
