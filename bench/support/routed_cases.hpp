#pragma once
// The routed problems and the solver traffic models the routing, overhead and diagnostics suites
// share.
//
// Two fields, each an expert set + router that ddm::make_routed_field combines with a policy:
//   analytic  ddm::synthetic::analytic_ddm with K clusters of 4 components in D dimensions and its
//             exact posterior router (tau = 1): compute-bound, O(J D) per row for the router and
//             O(4 D) per row and selected expert (J = 4 K components)
//   linear    expert k is v = a_k x (a_k = -(1 + k / K)), the router scores the row mean: the
//             cheapest routed field there is, so its cost is the routing machinery and memory traffic
//
// Traffic model (bytes a run must move, for bytes_per_second and triad_ratio): one pass is one read
// or one write of a (B, D) array of floats. A sample() run over uniform(N) moves
//   2 passes  to copy the noise into the state (each run starts from the same noise)
// + 2 passes per field evaluation (read x, write v: the field taken as one black box, so that the
//   ratio shows what routing costs beyond a monolithic memory-bound field)
// + the passes of the integrator's own lincombs (update_passes below, read off each stepper).

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <ddm/ddm.hpp>

namespace ddm::bench {

using value_t = float;

// ---------------------------------------------------------------------------------------------
// Policies

// The policies of the grid, by their ddm::policy_by_name specs (the benchmarks' names use them as
// they are): top_p:0.9 is nucleus routing at 0.9, full_then_top2@0.5 the full ensemble while
// t > 0.5 and top-2 below.
inline constexpr const char* all_policies[] = {"top1", "top2", "full", "top_p:0.9", "full_then_top2@0.5"};

/// The policy behind a spec: a ddm::builtin_policy, which both the host and the device routed field
/// take as it is (on a device it decides in the fused kernel).
[[nodiscard]] inline builtin_policy make_policy(const std::string& spec) { return policy_by_name(spec); }

// ---------------------------------------------------------------------------------------------
// The linear routed field

/// v = a x: one read and one write, nothing else.
struct scaled_expert {
  double a = -1.0;
  void operator()(batch_view<const value_t> x, double /*t*/, batch_view<value_t> v) const {
    lincomb(host_context{}, v, {a}, x);
  }
};

/// logits_k = -2 (s - c_k)^2 with s = sum(x_r) / sqrt(D) (standard normal for noise rows) and the
/// K centres c_k spread evenly over [-2, 2]: neighbouring experts share the rows near their
/// boundary, so top-p and the full ensemble select more than one.
struct row_mean_router_fn {
  int experts = 2;
  void operator()(batch_view<const value_t> x, double /*t*/, batch_view<value_t> logits) const {
    const double scale = 1.0 / std::sqrt(static_cast<double>(x.cols()));
    for (index_t r = 0; r < x.rows(); ++r) {
      // Sixteen partial sums: a reduction the compiler can vectorize without reassociating.
      const value_t* p = x.row(r);
      value_t acc[16] = {};
      index_t j = 0;
      for (; j + 16 <= x.cols(); j += 16)
        for (int u = 0; u < 16; ++u) acc[u] += p[j + u];
      double s = 0;
      for (; j < x.cols(); ++j) s += p[j];
      for (value_t a : acc) s += a;
      s *= scale;
      for (int k = 0; k < experts; ++k) {
        const double c = experts > 1 ? -2.0 + 4.0 * k / (experts - 1) : 0.0;
        logits(r, k) = static_cast<value_t>(-2.0 * (s - c) * (s - c));
      }
    }
  }
};

[[nodiscard]] inline expert_vector<scaled_expert> linear_experts(int k) {
  expert_vector<scaled_expert> e;
  for (int i = 0; i < k; ++i) e.push_back(scaled_expert{-(1.0 + static_cast<double>(i) / k)});
  return e;
}

[[nodiscard]] inline auto linear_router(int k) { return router_fn(static_cast<std::size_t>(k), "row-mean router", row_mean_router_fn{k}); }

/// The analytic DDM of the benchmarks: K clusters of 4 components in D dimensions, default seed.
[[nodiscard]] inline synthetic::analytic_ddm analytic_model(int k, index_t d) {
  synthetic::analytic_ddm_options o;
  o.clusters = k;
  o.dim = static_cast<int>(d);
  return synthetic::analytic_ddm(o);
}

// ---------------------------------------------------------------------------------------------
// Solvers: the integrator, its label, and the passes its lincombs make in one run over
// uniform(N) from t = 1 to t = 0 (N >= 4). Field evaluations are counted apart.

/// The solvers of the grid, by their names (ddm::with_integrator); bs32 is Bogacki-Shampine 3(2)
/// at its default rtol = 1e-3, atol = 1e-4.
using bench_integrators = integrator_list<euler, heun, dpmpp_2m, dpmpp_2s, dpmpp_3m, adaptive_bs32>;

inline const std::vector<std::string>& all_solvers() {
  static const std::vector<std::string> names = integrator_names(bench_integrators{});
  return names;
}

/// Calls fn(integrator) with the solver of that name.
template <class Fn>
decltype(auto) with_solver(const std::string& name, Fn&& fn) {
  return with_integrator(name, std::forward<Fn>(fn), bench_integrators{});
}

// euler: x += dt v reads x, v and writes x.
[[nodiscard]] inline double update_passes(const euler&, std::size_t n, const sample_result&) { return 3.0 * static_cast<double>(n); }
// heun: predictor (x, v0 -> xp) 3, corrector (x, v0, v1 -> x) 4; the step into t = 0 is Euler's 3.
[[nodiscard]] inline double update_passes(const heun&, std::size_t n, const sample_result&) {
  return 7.0 * static_cast<double>(n - 1) + 3.0;
}
// 2M: D = x - t v (3 passes) every step; the update reads x, D_i (and D_{i-1} once the history is
// usable) and writes x. First order (3) on the step from t = 1, on the next one (a history point
// at t = 1 carries no slope) and on the step into t = 0; second order (4) in between.
[[nodiscard]] inline double update_passes(const dpmpp_2m&, std::size_t n, const sample_result&) {
  return 3.0 * static_cast<double>(n) + 3.0 * 3.0 + 4.0 * static_cast<double>(n - 3);
}
// 3M: as 2M, with order 1, 1, 2, then 3 (reads x and three D: 5), and 1 into t = 0.
[[nodiscard]] inline double update_passes(const dpmpp_3m&, std::size_t n, const sample_result&) {
  return 3.0 * static_cast<double>(n) + 3.0 + 3.0 + 4.0 + 5.0 * static_cast<double>(n - 4) + 3.0;
}
// 2S: D (3), the midpoint state u (x, D -> u: 3) and the update (x, u, v_m -> x: 4); the steps from
// t = 1 and into t = 0 are first order (D 3 + update 3).
[[nodiscard]] inline double update_passes(const dpmpp_2s&, std::size_t n, const sample_result&) {
  return 10.0 * static_cast<double>(n - 2) + 2.0 * 6.0;
}
// Bogacki-Shampine 3(2), per schedule step: copy x -> y (2), copy k0 -> v (2), copy y -> x (2);
// per attempted internal step: stage inputs y + dt sum a_ij k_j for stages 1..3 (3 + 4 + 5), the
// solution y_new from y and four k (6), the error from four k (5) and the error norm (3 reads);
// once per run the first step size (two norms of 3 reads).
[[nodiscard]] inline double update_passes(const adaptive_bs32&, std::size_t n, const sample_result& r) {
  return 6.0 * static_cast<double>(n) + 26.0 * static_cast<double>(r.accepted_steps + r.rejected_steps) + 6.0;
}

/// One point of the routed solver x policy x K x B x D grid; the host and the device suites name
/// it the same way, so that bench/report.py can set their rows side by side.
enum class field_id { analytic, linear };

struct routed_case {
  field_id field;
  std::string solver;  // a name of bench_integrators
  std::string policy;  // a spec of all_policies
  int k;
  index_t b;
  index_t d;
};

[[nodiscard]] inline std::string routed_case_name(const routed_case& c) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "routed/%s/%s/%s/K:%d/B:%td/D:%td", c.field == field_id::analytic ? "analytic" : "linear",
                c.solver.c_str(), c.policy.c_str(), c.k, c.b, c.d);
  return buf;
}

}  // namespace ddm::bench
