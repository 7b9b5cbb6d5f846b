// Must not compile: the router's name() returns an int, which is not string-like (ddm::named).
// The test checks that the user sees ddm's explanation, and only that: the routed field stops at
// its static_assert instead of going on into errors deep inside the routing code.
#include <ddm/ddm.hpp>

struct numbered_router {
  std::size_t num_experts() const { return 2; }
  int name() const { return 7; }
  void operator()(ddm::batch_view<const float> x, double, ddm::batch_view<float> logits) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r) logits(r, 0) = logits(r, 1) = 0.0f;
  }
};

int main() {
  auto expert = [](ddm::batch_view<const float> x, double, ddm::batch_view<float> v) {
    ddm::copy(ddm::host_context{}, v, x);
  };
  auto field = ddm::make_routed_field<float>(ddm::expert_vector<decltype(expert)>({expert, expert}), numbered_router{},
                                             ddm::top_1());
  ddm::batch<float> x(4, 3);
  ddm::batch<float> centroids(2, 3);
  const auto schedule = ddm::schedules::uniform(4);
  auto routing = ddm::diagnostics::make_routing_observer<float>(field, schedule, centroids.cview());
  ddm::sample(field, x, schedule, ddm::euler{}, routing);
}
