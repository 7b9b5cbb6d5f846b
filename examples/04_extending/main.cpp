// ddm-extending: one's own expert, router, routing policy, observer and integrator, plugged into
// ddm's routed field and sampler. docs/extending.md walks through it; CTest builds and runs it.
//
// The DDM: K experts, expert k trained on data that sits at one point c_k. In rectified flow
// (x_t = (1 - t) x0 + t eps, v = eps - x0) expert k's exact velocity is v_k = (x - c_k) / t, and
// the exact posterior of expert k given x_t is softmax_k(-||x - (1 - t) c_k||^2 / (2 t^2)). With
// that router and the full ensemble, the routed field is the exact velocity of the data, so every
// sample must end on one of the points: the program checks that, and that its two ways of writing
// a policy (a type, and ddm::policy_fn) decide alike. It exits 1 when a check fails.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <ddm/ddm.hpp>

namespace {

constexpr ddm::index_t num_experts = 3;
constexpr ddm::index_t dim = 4;

// The data points c_k (K, D).
ddm::batch<double> make_centroids() {
  ddm::batch<double> c(num_experts, dim);
  for (ddm::index_t k = 0; k < num_experts; ++k)
    for (ddm::index_t j = 0; j < dim; ++j)
      c(k, j) = (j % num_experts == k ? 2.0 : -1.0) + 0.25 * static_cast<double>(k);
  return c;
}

// --- An expert: any type callable as f(x, t, v) on (B, D) views is a velocity field. ---------
// The routed field calls it on the sub-batch of rows routed to it; name() is optional for experts
// and, when present, follows the routers' and policies' rule (anything string-like).
struct point_expert {
  std::vector<double> point;  // c_k (D)

  void operator()(ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t j = 0; j < x.cols(); ++j) v(r, j) = (x(r, j) - point[static_cast<std::size_t>(j)]) / t;
  }
  [[nodiscard]] std::string name() const { return "point_expert"; }
};
static_assert(ddm::velocity_field<point_expert, double>);

// --- A router: num_experts(), a string-like name(), and r(x, t, logits) writing (B, K). -------
struct posterior_router {
  const ddm::batch<double>* centroids;  // (K, D)

  [[nodiscard]] std::size_t num_experts() const { return static_cast<std::size_t>(centroids->rows()); }
  [[nodiscard]] std::string_view name() const { return "posterior_router"; }
  void operator()(ddm::batch_view<const double> x, double t, ddm::batch_view<double> logits) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t k = 0; k < centroids->rows(); ++k) {
        double d2 = 0;
        for (ddm::index_t j = 0; j < x.cols(); ++j) {
          const double d = x(r, j) - (1 - t) * (*centroids)(k, j);
          d2 += d * d;
        }
        logits(r, k) = -d2 / (2 * t * t);
      }
  }
};
static_assert(ddm::router<posterior_router, double>);

// --- A routing policy as a type: select(ctx, probs, t, weights, selected) and name(). ---------
// apply_row decides one row; ddm::run_policy runs it over the rows (in a kernel, on a GPU) and
// ddm::check_policy_operands checks the shapes: the checks every built-in policy runs.
struct most_probable {
  [[nodiscard]] const char* name() const { return "most_probable"; }

  template <class T>
  bool apply_row(const T* p, int k_count, double /*t*/, T* w, std::uint8_t* selected) const {
    if (!ddm::valid_probability_row(p, k_count)) return false;
    int best = 0;
    for (int k = 1; k < k_count; ++k)
      if (p[k] > p[best]) best = k;
    for (int k = 0; k < k_count; ++k) {
      selected[k] = k == best ? 1 : 0;
      w[k] = k == best ? T(1) : T(0);
    }
    return true;
  }

  template <class T, class Space>
  void select(const ddm::execution_context<Space>& ctx, ddm::batch_view<const std::type_identity_t<T>, Space> probs,
              double t, ddm::batch_view<T, Space> weights, ddm::batch_view<std::uint8_t, Space> selected) const {
    ddm::check_policy_operands(*this, probs, weights, selected);
    ddm::run_policy(ctx, *this, probs, t, weights, selected);
  }
};
static_assert(ddm::routing_policy<most_probable, double>);

// --- The same policy as a callable, through ddm::policy_fn (host memory). ----------------------
auto most_probable_fn() {
  return ddm::policy_fn("most_probable_fn", [](ddm::batch_view<const double> p, double /*t*/,
                                               ddm::batch_view<double> w, ddm::batch_view<std::uint8_t> selected) {
    for (ddm::index_t r = 0; r < p.rows(); ++r) {
      ddm::index_t best = 0;
      for (ddm::index_t k = 1; k < p.cols(); ++k)
        if (p(r, k) > p(r, best)) best = k;
      for (ddm::index_t k = 0; k < p.cols(); ++k) {
        selected(r, k) = k == best ? 1 : 0;
        w(r, k) = k == best ? 1.0 : 0.0;
      }
    }
  });
}

// --- An observer: anything callable with a const ddm::step_event<T>&, after every step. ---------
// Records how far the samples are from the nearest data point as sampling goes on.
struct distance_to_data {
  const ddm::batch<double>* centroids;
  std::vector<double> t_next, mean_distance, max_distance;

  void operator()(const ddm::step_event<double>& e) {
    double sum = 0, worst = 0;
    for (ddm::index_t r = 0; r < e.x.rows(); ++r) {
      double nearest = std::numeric_limits<double>::infinity();
      for (ddm::index_t k = 0; k < centroids->rows(); ++k) {
        double d2 = 0;
        for (ddm::index_t j = 0; j < e.x.cols(); ++j) d2 += std::pow(e.x(r, j) - (*centroids)(k, j), 2);
        nearest = std::min(nearest, std::sqrt(d2));
      }
      sum += nearest;
      worst = std::max(worst, nearest);
    }
    t_next.push_back(e.t_next);
    mean_distance.push_back(sum / static_cast<double>(e.x.rows()));
    max_distance.push_back(worst);
  }
};

// --- An integrator: static order, name and evaluations_per_step, evaluations(schedule), and a
// stepper for each value type and memory space. The explicit midpoint rule (order 2):
//   x_{i+1} = x_i + dt v(x_i + dt/2 v(x_i, t_i), t_i + dt/2).
// It never evaluates the field at t = 0, where v_k = (x - c_k) / t is not defined.
struct midpoint {
  static constexpr int order = 2;
  static constexpr int evaluations_per_step = 2;
  static constexpr const char* name() noexcept { return "midpoint"; }

  [[nodiscard]] std::size_t evaluations(const ddm::time_schedule& s) const noexcept { return 2 * s.steps(); }

  template <class T, class Space>
  class stepper {
   public:
    stepper(const ddm::execution_context<Space>& ctx, ddm::index_t rows, ddm::index_t cols)
        : ctx_(ctx), v0_(ctx, rows, cols), vm_(ctx, rows, cols), xm_(ctx, rows, cols) {}

    template <class F>
    void step(F& f, ddm::batch_view<T, Space> x, double t, double t_next) {
      const double dt = t_next - t;
      f(x.as_const(), t, v0_.view());
      ddm::lincomb(ctx_, xm_.view(), {1.0, 0.5 * dt}, x, v0_);
      f(xm_.cview(), t + 0.5 * dt, vm_.view());
      ddm::lincomb(ctx_, x, {1.0, dt}, x, vm_);  // x is written only after the last evaluation
    }
    [[nodiscard]] ddm::batch_view<const T, Space> velocity() const noexcept { return v0_.cview(); }
    void reset() noexcept {}  // no history: nothing to forget between runs of ddm::sampler

   private:
    ddm::execution_context<Space> ctx_;
    ddm::batch<T, Space> v0_, vm_, xm_;
  };

  template <class T, class Space>
  [[nodiscard]] stepper<T, Space> make_stepper(const ddm::execution_context<Space>& ctx, ddm::index_t rows,
                                               ddm::index_t cols) const {
    return stepper<T, Space>(ctx, rows, cols);
  }
};
static_assert(ddm::integrator<midpoint, double> && ddm::fixed_step_integrator<midpoint>);

// The routed field of the K point experts under one policy.
template <class Policy>
auto make_field(const ddm::batch<double>& centroids, Policy policy) {
  std::vector<point_expert> experts;
  for (ddm::index_t k = 0; k < centroids.rows(); ++k)
    experts.push_back({std::vector<double>(centroids.cview().row(k), centroids.cview().row(k) + centroids.cols())});
  return ddm::make_routed_field<double>(ddm::expert_vector<point_expert>(std::move(experts)),
                                        posterior_router{&centroids}, std::move(policy));
}

}  // namespace

int main() {
  const ddm::batch<double> centroids = make_centroids();
  ddm::batch<double> noise(512, dim);
  ddm::fill_normal(ddm::host_context{}, noise.view(), /*seed=*/7);
  const auto schedule = ddm::schedules::uniform(24);
  bool ok = true;

  // 1. The full ensemble with the exact posterior router is the data's exact velocity: with our
  //    own integrator, every sample ends on a data point.
  auto exact = make_field(centroids, ddm::full_ensemble{});
  ddm::batch<double> x(noise.rows(), noise.cols());
  ddm::copy(ddm::host_context{}, x.view(), noise.cview());
  distance_to_data watch{&centroids, {}, {}, {}};
  const auto result = ddm::sample(exact, x, schedule, midpoint{}, watch);
  std::printf("full ensemble, %s, %zu steps, %zu field evaluations\n", midpoint::name(), result.steps,
              result.field_evaluations);
  std::printf("  t      mean / max distance to the nearest data point\n");
  for (std::size_t i = 0; i < watch.t_next.size(); i += 6)
    std::printf("  %.3f  %.3g / %.3g\n", watch.t_next[i], watch.mean_distance[i], watch.max_distance[i]);
  const double final_max = watch.max_distance.back();
  std::printf("  %.3f  %.3g / %.3g\n", watch.t_next.back(), watch.mean_distance.back(), final_max);
  const bool lands = final_max < 1e-3 && result.field_evaluations == midpoint{}.evaluations(schedule);
  std::printf("check: every sample ends on a data point (max distance %.2g < 1e-3): %s\n", final_max,
              lands ? "yes" : "NO");
  ok = ok && lands;

  // 2. The policy written as a type and as a policy_fn take the same decisions, so the samples
  //    agree bit for bit.
  auto by_type = make_field(centroids, most_probable{});
  auto by_fn = make_field(centroids, most_probable_fn());
  ddm::batch<double> a(noise.rows(), noise.cols()), b(noise.rows(), noise.cols());
  ddm::copy(ddm::host_context{}, a.view(), noise.cview());
  ddm::copy(ddm::host_context{}, b.view(), noise.cview());
  ddm::sample(by_type, a, schedule, midpoint{});
  ddm::sample(by_fn, b, schedule, midpoint{});
  bool same = true;
  for (ddm::index_t r = 0; r < a.rows(); ++r)
    for (ddm::index_t j = 0; j < a.cols(); ++j) same = same && a(r, j) == b(r, j);
  std::printf("check: policy '%s' and policy '%s' give the same samples: %s (relative cost %.2f: 1 of %td experts)\n",
              ddm::name_of(by_type.policy()).c_str(), ddm::name_of(by_fn.policy()).c_str(), same ? "yes" : "NO",
              by_type.relative_cost(), num_experts);
  ok = ok && same;
  return ok ? 0 : 1;
}
