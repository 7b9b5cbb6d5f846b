// Must not compile: the policy has no name(). The test checks that the user sees ddm's
// explanation of the concept, and that the compiler stops there.
#include <ddm/ddm.hpp>

struct nameless_policy {
  void select(const ddm::host_context&, ddm::batch_view<const float> probs, double, ddm::batch_view<float> weights,
              ddm::batch_view<std::uint8_t> selected) const {
    for (ddm::index_t r = 0; r < probs.rows(); ++r)
      for (ddm::index_t k = 0; k < probs.cols(); ++k) {
        weights(r, k) = probs(r, k);
        selected(r, k) = 1;
      }
  }
};

int main() {
  auto expert = [](ddm::batch_view<const float> x, double, ddm::batch_view<float> v) {
    ddm::copy(ddm::host_context{}, v, x);
  };
  auto router = ddm::router_fn(2, "flat", [](ddm::batch_view<const float>, double, ddm::batch_view<float> logits) {
    ddm::fill(ddm::host_context{}, logits, 0.0f);
  });
  auto field = ddm::make_routed_field<float>(ddm::expert_vector<decltype(expert)>({expert, expert}), router,
                                             nameless_policy{});
  ddm::batch<float> x(4, 3);
  ddm::batch<float> centroids(2, 3);
  const auto schedule = ddm::schedules::uniform(4);
  auto routing = ddm::diagnostics::make_routing_observer<float>(field, schedule, centroids.cview());
  ddm::sample(field, x, schedule, ddm::euler{}, routing);
}
