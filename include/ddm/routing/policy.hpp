#pragma once
// Routing policies: from a row's router probabilities p (K values) to the experts evaluated for
// that row and their weights w. The routed velocity is v = sum_k w_k v_k over the selected k.
//
//   top_k{k}          the k most probable experts, w_k = p_k / sum_{selected} p
//   full_ensemble{m}  every expert with p_k >= m (m = 0: all of them), w_k = p_k (no renormalization)
//   top_p{p}          nucleus: the fewest most probable experts whose probabilities sum to >= p,
//                     renormalized
//   threshold{m}      every expert with p_k >= m, renormalized
//   scheduled{t*, early, late}   `early` while t > t*, `late` for t <= t*
//
// Ties at the selection boundary are split, not broken: when the last expert a policy keeps is
// exactly tied (equal probabilities) with experts it would drop, every tied expert is kept and
// they share that place's mass through the usual renormalization (top-1 of (0.5, 0.5) keeps both,
// 0.5 each). A router that sees only equal priors (t = 1) thus sends no row to expert 0 alone, a
// decision stays a pure function of p that does not depend on the experts' order, and the cost
// counts the extra experts. Ties at probability 0 are not extended: they carry no mass to share.
// Policies that filter by a probability always keep the most probable expert, so no row is ever
// left without one.
//
// Every policy is a small trivially copyable value with a member
//     bool apply_row(const T* p, int K, double t, T* w, std::uint8_t* selected) const
// marked DDM_HOST_DEVICE: the CUDA backend passes the policy by value to a kernel and runs the
// same per-row code. policy_rows<Space> runs apply_row over the rows of a batch; `select`
// validates its arguments on the host and then calls it. apply_row returns false only when a
// row's probabilities are invalid (negative, NaN, or zero where weights must be renormalized).

#include <cmath>
#include <concepts>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/name.hpp"
#include "ddm/core/parallel.hpp"

namespace ddm {

// ---------------------------------------------------------------------------------------------
// Per-row math (no exceptions, no containers: host and device share it)

/// True when every p_k is a finite number >= 0.
template <class T>
DDM_HOST_DEVICE inline bool valid_probability_row(const T* p, int num_experts) noexcept {
  for (int k = 0; k < num_experts; ++k) {
    const double q = static_cast<double>(p[k]);
    if (!(q >= 0.0) || !(q - q == 0.0)) return false;
  }
  return true;
}

/// The most probable expert not yet selected; among equal ones the lowest index (the policies
/// then keep the others through keep_boundary_ties). -1 when every expert is selected.
template <class T>
DDM_HOST_DEVICE inline int most_probable_unselected(const T* p, int num_experts, const std::uint8_t* selected) noexcept {
  int best = -1;
  for (int k = 0; k < num_experts; ++k)
    if (selected[k] == 0 && (best < 0 || p[k] > p[best])) best = k;
  return best;
}

/// The tie rule: the least probable selected expert is the boundary; every unselected expert
/// exactly as probable is selected too, unless that probability is 0. Call it after a policy's
/// own selection and before the weights.
template <class T>
DDM_HOST_DEVICE inline void keep_boundary_ties(const T* p, int num_experts, std::uint8_t* selected) noexcept {
  int boundary = -1;
  for (int k = 0; k < num_experts; ++k)
    if (selected[k] != 0 && (boundary < 0 || p[k] < p[boundary])) boundary = k;
  if (boundary < 0 || !(static_cast<double>(p[boundary]) > 0.0)) return;
  for (int k = 0; k < num_experts; ++k)
    if (p[k] == p[boundary]) selected[k] = 1;
}

/// w_k = p_k / sum of the selected p (0 where unselected). False when that sum is not > 0.
template <class T>
DDM_HOST_DEVICE inline bool renormalize_selected_row(const T* p, int num_experts, const std::uint8_t* selected,
                                                     T* w) noexcept {
  double sum = 0.0;
  for (int k = 0; k < num_experts; ++k)
    if (selected[k] != 0) sum += static_cast<double>(p[k]);
  if (!(sum > 0.0)) return false;
  const double inv = 1.0 / sum;
  for (int k = 0; k < num_experts; ++k)
    w[k] = selected[k] != 0 ? static_cast<T>(static_cast<double>(p[k]) * inv) : T(0);
  return true;
}

/// top-k: the k most probable experts (and every expert tied with the k-th), renormalized. Needs
/// 1 <= k <= K; false (nothing written) otherwise: past K, the (K+1)-th pick would index
/// selected[-1].
template <class T>
DDM_HOST_DEVICE inline bool top_k_row(const T* p, int num_experts, int k, T* w, std::uint8_t* selected) noexcept {
  if (k < 1 || k > num_experts) return false;
  if (!valid_probability_row(p, num_experts)) return false;
  for (int e = 0; e < num_experts; ++e) selected[e] = 0;
  for (int i = 0; i < k; ++i) selected[most_probable_unselected(p, num_experts, selected)] = 1;
  keep_boundary_ties(p, num_experts, selected);
  return renormalize_selected_row(p, num_experts, selected, w);
}

/// The selection of the full ensemble and of threshold: every expert with p_k >= min_probability,
/// always the most probable one, and the experts tied with the least probable selected one.
template <class T>
DDM_HOST_DEVICE inline void select_at_least_row(const T* p, int num_experts, double min_probability,
                                                std::uint8_t* selected) noexcept {
  for (int e = 0; e < num_experts; ++e) selected[e] = 0;
  const int top = most_probable_unselected(p, num_experts, selected);
  for (int e = 0; e < num_experts; ++e)
    selected[e] = (e == top || static_cast<double>(p[e]) >= min_probability) ? 1 : 0;
  keep_boundary_ties(p, num_experts, selected);
}

/// Full ensemble: every expert with p_k >= min_probability, and always the most probable one,
/// weighted by p_k itself (the weights sum to the selected probabilities, 1 when all are kept).
template <class T>
DDM_HOST_DEVICE inline bool full_ensemble_row(const T* p, int num_experts, double min_probability, T* w,
                                              std::uint8_t* selected) noexcept {
  if (!valid_probability_row(p, num_experts)) return false;
  select_at_least_row(p, num_experts, min_probability, selected);
  for (int e = 0; e < num_experts; ++e) w[e] = selected[e] != 0 ? p[e] : T(0);
  return true;
}

/// Nucleus (top-p): the most probable experts, in decreasing order, until their probabilities
/// reach top_p times the row's total (and every expert tied with the last one); renormalized. top_p >= 1 keeps every
/// expert with p_k > 0. Needs 0 < top_p <= 1.
template <class T>
DDM_HOST_DEVICE inline bool top_p_row(const T* p, int num_experts, double top_p, T* w, std::uint8_t* selected) noexcept {
  if (!valid_probability_row(p, num_experts)) return false;
  for (int e = 0; e < num_experts; ++e) selected[e] = 0;
  if (top_p >= 1.0) {
    // Rounding makes "sum reaches 1" unreliable; p = 1 means every expert that has any mass.
    for (int e = 0; e < num_experts; ++e) selected[e] = static_cast<double>(p[e]) > 0.0 ? 1 : 0;
  } else {
    double total = 0.0;
    for (int e = 0; e < num_experts; ++e) total += static_cast<double>(p[e]);
    const double target = top_p * total;
    double mass = 0.0;
    for (int count = 0; count < num_experts && (count == 0 || mass < target); ++count) {
      const int next = most_probable_unselected(p, num_experts, selected);
      selected[next] = 1;
      mass += static_cast<double>(p[next]);
    }
    keep_boundary_ties(p, num_experts, selected);
  }
  return renormalize_selected_row(p, num_experts, selected, w);
}

/// Threshold: every expert with p_k >= min_probability, and always the most probable one (with
/// the experts tied with it), renormalized.
template <class T>
DDM_HOST_DEVICE inline bool threshold_row(const T* p, int num_experts, double min_probability, T* w,
                                          std::uint8_t* selected) noexcept {
  if (!valid_probability_row(p, num_experts)) return false;
  select_at_least_row(p, num_experts, min_probability, selected);
  return renormalize_selected_row(p, num_experts, selected, w);
}

// ---------------------------------------------------------------------------------------------
// Running a policy over a batch

/// Runs policy.apply_row over the rows of (B, K) views in `Space`; returns the first row whose
/// probabilities were rejected, or -1. Specialized per memory space.
template <class Space>
struct policy_rows {
  static_assert(sizeof(Space) == 0,
                "ddm: there is no routing-policy backend for this memory space. For ddm::cuda_space, "
                "include <ddm/cuda.hpp> and link ddm::cuda.");
};

template <>
struct policy_rows<host_space> {
  template <class Policy, class T>
  static index_t run(const host_context& ctx, const Policy& policy, batch_view<const T> probs, double t,
                     batch_view<T> weights, batch_view<std::uint8_t> selected) {
    const int k = static_cast<int>(probs.cols());
    // apply_row is const and per row (the row_policy contract), so rows may run on any thread.
    return reduce_row_ranges(
        ctx, probs.rows(), 8 * index_t{k}, index_t{-1},
        [&](const row_range& range) {
          for (index_t r = range.begin; r < range.end; ++r)
            if (!policy.apply_row(probs.row(r), k, t, weights.row(r), selected.row(r))) return r;
          return index_t{-1};
        },
        [](index_t a, index_t b) { return a >= 0 ? a : b; });
  }
};

namespace detail {

// A parameter as a reader would write it in a policy's name (0.9, 1e-06), not to 17 digits.
inline std::string short_number(double value) {
  std::ostringstream os;
  os << value;
  return os.str();
}

}  // namespace detail

/// The checks every built-in policy's select() runs, public so that a policy of one's own runs the
/// same ones (docs/routing.md, "A policy of your own").
///
/// check_policy_operands: weights and selected have the shape (B, K) of probs, and K >= 1; throws
/// ddm::shape_error naming the policy and the argument. Shapes are checked on every call, so the
/// message (which needs the policy's name, a string) is only built when a check fails: a routed
/// field's call allocates nothing.
template <class Policy, class T, class Space>
void check_policy_operands(const Policy& policy, batch_view<const T, Space> probs, batch_view<T, Space> weights,
                           batch_view<std::uint8_t, Space> selected) {
  auto fail = [&](const char* name, index_t rows, index_t cols) {
    throw shape_error(ddm::concat("ddm::routing_policy '", name_of(policy), "'::select: argument '", name,
                                     "' has shape (", rows, ", ", cols, "), expected (", probs.rows(), ", ",
                                     probs.cols(), ")"));
  };
  if (!same_shape(weights, probs)) fail("weights", weights.rows(), weights.cols());
  if (!same_shape(selected, probs)) fail("selected", selected.rows(), selected.cols());
  if (probs.cols() < 1)
    throw shape_error(ddm::concat("ddm::routing_policy '", name_of(policy), "'::select: argument 'probs' has ",
                                     probs.cols(), " columns (experts), expected >= 1"));
}

/// run_policy: runs policy.apply_row(p, K, t, w, selected) over the rows (on the host, or in a
/// kernel for ddm::cuda_space) and throws ddm::argument_error naming the policy and the first row
/// whose probabilities apply_row rejected (negative, non-finite, or no mass to renormalize).
template <class Policy, class T, class Space>
void run_policy(const execution_context<Space>& ctx, const Policy& policy, batch_view<const T, Space> probs,
                double t, batch_view<T, Space> weights, batch_view<std::uint8_t, Space> selected) {
  if (probs.rows() == 0) return;
  const index_t bad = policy_rows<Space>::run(ctx, policy, probs, t, weights, selected);
  if (bad >= 0)
    throw argument_error(ddm::concat("ddm::routing_policy '", name_of(policy),
                                        "'::select: the probabilities of row ", bad,
                                        " are invalid (a negative or non-finite value, or no positive mass to "
                                        "renormalize), expected the output of ddm::softmax_rows"));
}

/// The select() of a policy that is its per-row apply_row: check the operands on the host, then run
/// apply_row over the rows where the batch lives. A policy derives from row_policy<itself> instead
/// of writing these two lines again.
template <class Policy>
struct row_policy {
  template <class T, class Space>
  void select(const execution_context<Space>& ctx, batch_view<const std::type_identity_t<T>, Space> probs, double t,
              batch_view<T, Space> weights, batch_view<std::uint8_t, Space> selected) const {
    const auto& self = static_cast<const Policy&>(*this);
    check_policy_operands(self, probs, weights, selected);
    run_policy(ctx, self, probs, t, weights, selected);
  }
};

/// The k most probable experts, weights renormalized over them. Costs k expert evaluations per row
/// (more where the k-th is exactly tied with others: they are all kept).
struct top_k {
  int k = 1;

  constexpr explicit top_k(int k_) : k(k_) {
    if (k_ < 1) ddm::fail_argument("ddm::top_k", "k", k_, "an integer >= 1 (the number of experts per row)");
  }

  [[nodiscard]] std::string name() const { return "top_" + std::to_string(k); }

  template <class T>
  DDM_HOST_DEVICE bool apply_row(const T* p, int num_experts, double /*t*/, T* w, std::uint8_t* selected) const noexcept {
    return top_k_row(p, num_experts, k, w, selected);
  }

  template <class T, class Space>
  void select(const execution_context<Space>& ctx, batch_view<const std::type_identity_t<T>, Space> probs, double t,
              batch_view<T, Space> weights, batch_view<std::uint8_t, Space> selected) const {
    check_policy_operands(*this, probs, weights, selected);
    if (k > probs.cols())
      throw argument_error(ddm::concat("ddm::top_k::select: k = ", k, " but the router scores only ",
                                          probs.cols(), " experts, expected 1 <= k <= ", probs.cols()));
    run_policy(ctx, *this, probs, t, weights, selected);
  }
};

/// Top-1: one expert per row (the most probable), weight 1.
[[nodiscard]] constexpr top_k top_1() { return top_k{1}; }
/// Top-2: the two most probable experts, w = p / (p_(1) + p_(2)).
[[nodiscard]] constexpr top_k top_2() { return top_k{2}; }

/// Every expert weighted by its router probability, not renormalized (the DDM decomposition
/// sum_k p(k | x_t) v_k). Experts with p_k < min_probability are skipped (Paris skips p < 1e-6);
/// the most probable expert is always kept.
struct full_ensemble : row_policy<full_ensemble> {
  double min_probability = 0.0;

  constexpr full_ensemble() = default;
  constexpr explicit full_ensemble(double min_probability_) : min_probability(min_probability_) {
    if (!(min_probability_ >= 0.0 && min_probability_ <= 1.0))
      ddm::fail_argument("ddm::full_ensemble", "min_probability", min_probability_, "a value in [0, 1]");
  }

  [[nodiscard]] std::string name() const {
    return min_probability > 0.0 ? "full_ensemble(p >= " + detail::short_number(min_probability) + ")" : "full_ensemble";
  }

  template <class T>
  DDM_HOST_DEVICE bool apply_row(const T* p, int num_experts, double /*t*/, T* w, std::uint8_t* selected) const noexcept {
    return full_ensemble_row(p, num_experts, min_probability, w, selected);
  }
};

/// Nucleus routing: the fewest most probable experts whose probabilities sum to at least p,
/// renormalized.
struct top_p : row_policy<top_p> {
  double p = 0.9;

  constexpr explicit top_p(double p_) : p(p_) {
    if (!(p_ > 0.0 && p_ <= 1.0)) ddm::fail_argument("ddm::top_p", "p", p_, "a value in (0, 1]");
  }

  [[nodiscard]] std::string name() const { return "top_p(" + detail::short_number(p) + ")"; }

  template <class T>
  DDM_HOST_DEVICE bool apply_row(const T* probs, int num_experts, double /*t*/, T* w, std::uint8_t* selected) const noexcept {
    return top_p_row(probs, num_experts, p, w, selected);
  }
};

/// Every expert with p_k >= min_probability (and always the most probable), renormalized.
struct threshold : row_policy<threshold> {
  double min_probability = 0.05;

  constexpr explicit threshold(double min_probability_) : min_probability(min_probability_) {
    if (!(min_probability_ >= 0.0 && min_probability_ <= 1.0))
      ddm::fail_argument("ddm::threshold", "min_probability", min_probability_, "a value in [0, 1]");
  }

  [[nodiscard]] std::string name() const { return "threshold(" + detail::short_number(min_probability) + ")"; }

  template <class T>
  DDM_HOST_DEVICE bool apply_row(const T* p, int num_experts, double /*t*/, T* w, std::uint8_t* selected) const noexcept {
    return threshold_row(p, num_experts, min_probability, w, selected);
  }
};

/// One policy while t > t_switch (early, high noise) and another for t <= t_switch (late, fine
/// detail): e.g. scheduled{0.5, full_ensemble{}, top_2()} or the reverse. Schedules nest.
template <class Early, class Late>
struct scheduled {
  double t_switch = 0.5;
  Early early;
  Late late;

  constexpr scheduled(double t_switch_, Early early_, Late late_)
      : t_switch(t_switch_), early(std::move(early_)), late(std::move(late_)) {
    if (!(t_switch_ >= 0.0 && t_switch_ <= 1.0))
      ddm::fail_argument("ddm::scheduled", "t_switch", t_switch_, "a time in [0, 1]");
  }

  /// The policy in force at time t.
  [[nodiscard]] constexpr bool is_early(double t) const noexcept { return t > t_switch; }

  [[nodiscard]] std::string name() const {
    const std::string t_star = detail::short_number(t_switch);
    return "scheduled(t > " + t_star + ": " + name_of(early) + "; t <= " + t_star + ": " + name_of(late) + ")";
  }

  template <class T>
  DDM_HOST_DEVICE bool apply_row(const T* p, int num_experts, double t, T* w, std::uint8_t* selected) const noexcept
    requires requires(const Early& e, const Late& l) {
      e.apply_row(p, num_experts, t, w, selected);
      l.apply_row(p, num_experts, t, w, selected);
    }
  {
    return t > t_switch ? early.apply_row(p, num_experts, t, w, selected) : late.apply_row(p, num_experts, t, w, selected);
  }

  template <class T, class Space>
  void select(const execution_context<Space>& ctx, batch_view<const std::type_identity_t<T>, Space> probs, double t,
              batch_view<T, Space> weights, batch_view<std::uint8_t, Space> selected) const {
    if (is_early(t)) {
      early.select(ctx, probs, t, weights, selected);
    } else {
      late.select(ctx, probs, t, weights, selected);
    }
  }
};

template <class Early, class Late>
scheduled(double, Early, Late) -> scheduled<Early, Late>;

/// P turns (B, K) probabilities at time t into weights and selections:
/// p.select(ctx, probs, t, weights, selected), and has a string-like name() for reports and error
/// messages (ddm::named, the routers' rule).
template <class P, class T, class Space = host_space>
concept routing_policy =
    named<P> && requires(const P& p, const execution_context<Space>& ctx, batch_view<const T, Space> probs,
                         double t, batch_view<T, Space> weights, batch_view<std::uint8_t, Space> selected) {
      p.select(ctx, probs, t, weights, selected);
    };

/// A routing policy chosen at run time (for tables that loop over policies). Holds any
/// routing_policy for T in Space; copies share the (immutable) policy.
template <class T, class Space = host_space>
class any_routing_policy {
 public:
  template <class P>
    requires(!std::is_same_v<std::remove_cvref_t<P>, any_routing_policy> &&
             routing_policy<std::remove_cvref_t<P>, T, Space>)
  any_routing_policy(P&& policy)  // NOLINT: implicit, like std::function
      : impl_(std::make_shared<model<std::remove_cvref_t<P>>>(std::forward<P>(policy))) {}

  [[nodiscard]] std::string name() const { return impl_->name(); }

  void select(const execution_context<Space>& ctx, batch_view<const T, Space> probs, double t,
              batch_view<T, Space> weights, batch_view<std::uint8_t, Space> selected) const {
    impl_->select(ctx, probs, t, weights, selected);
  }

 private:
  struct concept_base {
    virtual ~concept_base() = default;
    [[nodiscard]] virtual std::string name() const = 0;
    virtual void select(const execution_context<Space>& ctx, batch_view<const T, Space> probs, double t,
                        batch_view<T, Space> weights, batch_view<std::uint8_t, Space> selected) const = 0;
  };
  template <class P>
  struct model final : concept_base {
    explicit model(P p) : policy(std::move(p)) {}
    [[nodiscard]] std::string name() const override { return name_of(policy); }
    void select(const execution_context<Space>& ctx, batch_view<const T, Space> probs, double t,
                batch_view<T, Space> weights, batch_view<std::uint8_t, Space> selected) const override {
      policy.select(ctx, probs, t, weights, selected);
    }
    P policy;
  };
  std::shared_ptr<const concept_base> impl_;
};

/// A callable f(probs, t, weights, selected) on host views, with a name, as a routing policy: the
/// policy counterpart of ddm::router_fn. select() runs the built-in policies' checks around f:
/// before, the operands' shapes (check_policy_operands) and the probabilities (every value finite
/// and >= 0, the output of ddm::softmax_rows); after, that f selected at least one expert in every
/// row and wrote finite weights >= 0 for the selected ones. Host memory only: a policy for device
/// memory is a type with apply_row (see top_k), which runs in a kernel.
template <class F>
class policy_function {
 public:
  policy_function(std::string name, F f) : name_(std::move(name)), f_(std::move(f)) {}

  [[nodiscard]] const std::string& name() const noexcept { return name_; }

  template <class T>
    requires std::invocable<const F&, batch_view<const T>, double, batch_view<T>, batch_view<std::uint8_t>>
  void select(const host_context& /*ctx*/, batch_view<const std::type_identity_t<T>> probs, double t,
              batch_view<T> weights, batch_view<std::uint8_t> selected) const {
    check_policy_operands(*this, probs, weights, selected);
    const int k = static_cast<int>(probs.cols());
    for (index_t r = 0; r < probs.rows(); ++r)
      if (!valid_probability_row(probs.row(r), k))
        throw argument_error(ddm::concat("ddm::policy_fn '", name_, "': the probabilities of row ", r,
                                            " are invalid (a negative or non-finite value), expected the "
                                            "output of ddm::softmax_rows"));
    f_(probs, t, weights, selected);
    for (index_t r = 0; r < probs.rows(); ++r) {
      bool any = false;
      for (int e = 0; e < k; ++e) {
        if (!selected(r, e)) continue;
        any = true;
        const double w = static_cast<double>(weights(r, e));
        if (!(w >= 0.0) || !(w - w == 0.0))
          throw argument_error(ddm::concat("ddm::policy_fn '", name_, "': weight (", r, ", ", e, ") = ", w,
                                              " of a selected expert, expected a finite value >= 0"));
      }
      if (!any)
        throw argument_error(ddm::concat("ddm::policy_fn '", name_, "': row ", r,
                                            " has no selected expert, expected at least one per row"));
    }
  }

 private:
  std::string name_;
  F f_;
};

/// policy_fn(name, f): f(probs, t, weights, selected) as a routing policy (see policy_function).
template <class F>
[[nodiscard]] policy_function<std::decay_t<F>> policy_fn(std::string name, F&& f) {
  return {std::move(name), std::forward<F>(f)};
}

}  // namespace ddm
