#pragma once
// experts + router + policy = a velocity field.
//
// Per call, for a batch x (B, D) at time t:
//   1. the router writes logits (B, K); softmax_rows turns them into probabilities p (B, K)
//   2. the policy selects experts and weights per row: w (B, K), selected (B, K)
//   3. rows are grouped by selected expert (a counting sort: expert k gets its rows in order)
//   4. each expert that any row selected is called once, on its rows gathered into a contiguous
//      sub-batch (or on x itself when it has all B rows); an expert no row selected is not called.
//      The (expert, rows) groups go to ddm::evaluate_groups: one by one, or all at once to an
//      expert set that takes them together (ddm::grouped_expert_set, e.g. experts on other processes)
//   5. v(r) = sum_k w(r, k) v_k(r), scatter-added from the sub-batches
// Observers then see a routing_event (the decision and the per-expert row counts), and the field
// keeps cumulative per-expert counts, so the cost of a policy is visible: top-2 of 8 experts
// evaluates a quarter of the rows the full ensemble does.
//
// Conditioning: experts that take row indices (ddm::conditioned_velocity_field) get the original
// row index of every row of their sub-batch. The routed field takes row indices itself, so it
// can be an expert of another routed field or sit under a guided field: then the indices its
// experts see are composed with the ones it was given.
//
// Workspace (decision, grouping, sub-batches) is kept between calls: after the first call with a
// given shape, a call allocates nothing.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/conditioning.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/field.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/scratch.hpp"
#include "ddm/routing/ensemble.hpp"
#include "ddm/routing/grouping.hpp"
#include "ddm/routing/policy.hpp"
#include "ddm/routing/router.hpp"
#include "ddm/routing/softmax.hpp"

namespace ddm {

/// What a routed field decided in one call: the (B, K) decision for each row, and when and how
/// much it cost. Recorded once per call; observers of the sampler (the routing observer) read the
/// one of each step's start (step_decision()) from the field instead of deciding again.
template <class T, class Space = host_space>
struct routing_decision {
  batch<T, Space> logits;                 ///< (B, K) the router's output
  batch<T, Space> probabilities;          ///< (B, K) softmax of the logits (with the field's temperature)
  batch<T, Space> weights;                ///< (B, K) the policy's weights; 0 where unselected
  batch<std::uint8_t, Space> selected;    ///< (B, K) 1 where the expert was evaluated for the row
  std::size_t call = 0;                   ///< index of the call since construction or reset_counts()
  double t = 0.0;                         ///< the time of the call
  std::vector<std::size_t> rows_per_expert;  ///< (K) rows each expert evaluated in the call

  /// Selected (row, expert) pairs: the expert row evaluations of the call.
  [[nodiscard]] std::size_t selected_pairs() const noexcept {
    std::size_t n = 0;
    for (std::size_t r : rows_per_expert) n += r;
    return n;
  }
};

/// What observers of a routed field see after each call.
template <class T, class Space = host_space>
struct routing_event {
  std::size_t call;                                 ///< index of the call since construction or reset
  double t;                                         ///< the time of the call
  batch_view<const T, Space> x;                     ///< (B, D) the routed batch
  batch_view<const T, Space> v;                     ///< (B, D) the combined velocity just written
  batch_view<const T, Space> logits;                ///< (B, K)
  batch_view<const T, Space> probabilities;         ///< (B, K)
  batch_view<const T, Space> weights;               ///< (B, K)
  batch_view<const std::uint8_t, Space> selected;   ///< (B, K)
  std::span<const std::size_t> rows_per_expert;     ///< (K) rows each expert evaluated in this call
};

namespace detail {

/// What every memory space's routed field shares: the experts, router and policy, the decision
/// buffers, the cost counters, the accessors and the observers. The call itself (routed_field's
/// operator()) is written per memory space: the host one below, the CUDA one in
/// ddm/cuda/routing/routed_field.hpp.
template <class Experts, class Router, class Policy, class T, class Space>
class routed_field_base {
  static_assert(expert_set<Experts, T, Space>,
                "ddm::routed_field: Experts is not a ddm::expert_set for this value type and memory space "
                "(size(), evaluate(k, x, t, v) and evaluate(k, x, t, v, rows)); use ddm::ensemble, "
                "ddm::expert_vector or ddm::any_ensemble, whose experts are ddm::velocity_field");
  static_assert(ddm::router<Router, T, Space>,
                "ddm::routed_field: Router is not a ddm::router for this value type and memory space "
                "(num_experts(), a string-like name() and router(x, t, logits) writing (B, K) logits); wrap a callable "
                "with ddm::router_fn(K, name, f)");
  static_assert(routing_policy<Policy, T, Space>,
                "ddm::routed_field: Policy is not a ddm::routing_policy for this value type and memory space "
                "(select(ctx, probs, t, weights, selected) and a string-like name()); wrap a callable with "
                "ddm::policy_fn(name, f)");

 public:
  using value_type = T;
  using space = Space;
  using observer_type = std::function<void(const routing_event<T, Space>&)>;
  /// Whether the experts, router and policy satisfy their concepts: code built on a routed field
  /// (the routing observer) compiles nothing further when they do not, so that the build stops
  /// at the static_asserts above.
  static constexpr bool components_valid = expert_set<Experts, T, Space> && ddm::router<Router, T, Space> &&
                                           routing_policy<Policy, T, Space>;

  routed_field_base(Experts experts, Router router, Policy policy, execution_context<Space> ctx = {})
      : experts_(std::move(experts)), router_(std::move(router)), policy_(std::move(policy)), ctx_(ctx) {
    const std::size_t k = experts_.size();
    if (k == 0) throw argument_error("ddm::routed_field: the expert set is empty, expected at least one expert");
    if (router_.num_experts() != k)
      throw argument_error(ddm::concat("ddm::routed_field: router '", name_of(router_), "' scores ",
                                          router_.num_experts(), " experts but the expert set holds ", k,
                                          ", expected the same number"));
    call_rows_.assign(k, 0);
    total_rows_.assign(k, 0);
    total_calls_.assign(k, 0);
    groups_.reserve(k);
  }

  [[nodiscard]] std::size_t num_experts() const noexcept { return call_rows_.size(); }
  [[nodiscard]] Experts& experts() noexcept { return experts_; }
  [[nodiscard]] const Experts& experts() const noexcept { return experts_; }
  [[nodiscard]] Router& router() noexcept { return router_; }
  [[nodiscard]] const Router& router() const noexcept { return router_; }
  [[nodiscard]] Policy& policy() noexcept { return policy_; }
  [[nodiscard]] const Policy& policy() const noexcept { return policy_; }
  /// The context the field's own work (softmax, policy, grouping, combination) is enqueued in.
  [[nodiscard]] const execution_context<Space>& context() const noexcept { return ctx_; }

  /// The softmax temperature applied to the router's logits (default 1: the router's own scale).
  [[nodiscard]] double temperature() const noexcept { return temperature_; }
  void set_temperature(double temperature) {
    if (!(temperature > 0.0) || !std::isfinite(temperature))
      ddm::fail_argument("ddm::routed_field::set_temperature", "temperature", temperature, "a finite value > 0");
    temperature_ = temperature;
  }

  /// The decision of the last call (empty before the first).
  [[nodiscard]] const routing_decision<T, Space>& last_decision() const noexcept {
    return last_is_step_start_ ? step_decision_ : decision_;
  }
  /// The decision of the first call of the sampler's latest step, at its start (x_i, t_i), or
  /// nullptr when no ddm::sample() run has called this field. ddm::sample() marks that call
  /// (mark_step_start), so the calls that follow it, Heun's corrector at t_{i+1}, a later stage,
  /// an observer's finite differences at t_i, do not replace it. What the routing observer reads.
  [[nodiscard]] const routing_decision<T, Space>* step_decision() const noexcept {
    return step_decision_.logits.empty() ? nullptr : &step_decision_;
  }
  /// Called by ddm::sample() right after the first call of each step: that call's decision
  /// becomes step_decision(). It swaps buffers, copies nothing and allocates nothing.
  void mark_step_start() noexcept {
    if (last_is_step_start_ || decision_.logits.empty()) return;
    using std::swap;
    swap(step_decision_, decision_);
    last_is_step_start_ = true;
  }
  /// Rows each expert evaluated in the last call.
  [[nodiscard]] std::span<const std::size_t> last_expert_rows() const noexcept { return call_rows_; }
  /// Rows each expert evaluated, summed over all calls since construction or reset_counts().
  [[nodiscard]] std::span<const std::size_t> expert_rows() const noexcept { return total_rows_; }
  /// Calls of each expert (at most one per routed-field call) since construction or reset.
  [[nodiscard]] std::span<const std::size_t> expert_calls() const noexcept { return total_calls_; }
  /// Calls of the routed field since construction or reset.
  [[nodiscard]] std::size_t calls() const noexcept { return calls_; }
  /// Rows routed (B summed over calls) since construction or reset.
  [[nodiscard]] std::size_t rows_routed() const noexcept { return rows_routed_; }
  /// All expert row evaluations since construction or reset (the sum of expert_rows()).
  [[nodiscard]] std::size_t expert_evaluations() const noexcept {
    std::size_t s = 0;
    for (auto n : total_rows_) s += n;
    return s;
  }
  /// Expert evaluations relative to the full ensemble's K per routed row (1 = full cost,
  /// k / K for top-k). 0 before the first call.
  [[nodiscard]] double relative_cost() const noexcept {
    return rows_routed_ == 0 ? 0.0
                             : static_cast<double>(expert_evaluations()) /
                                   (static_cast<double>(rows_routed_) * static_cast<double>(num_experts()));
  }
  void reset_counts() noexcept {
    calls_ = 0;
    rows_routed_ = 0;
    for (auto& n : total_rows_) n = 0;
    for (auto& n : total_calls_) n = 0;
  }

  /// Called after every call with the decision and the per-expert counts of that call.
  void add_observer(observer_type observer) { observers_.push_back(std::move(observer)); }
  void clear_observers() noexcept { observers_.clear(); }

 protected:
  // The checks every call makes before any work; returns false when there is nothing to do (B = 0).
  bool begin_call_(batch_view<const T, Space> x, double t, batch_view<T, Space> v) {
    constexpr const char* where = "ddm::routed_field";
    ddm::require_same_shape(where, "v", v, x);
    if (!(t >= 0.0 && t <= 1.0)) ddm::fail_argument(where, "t", t, "a time in [0, 1]");
    if (!x.empty() && (!detail::alias_ok(x, v.as_const()) || x.data() == static_cast<const T*>(v.data())))
      throw argument_error("ddm::routed_field: argument 'v' overlaps 'x', expected separate memory (the output is "
                           "accumulated while x is still read)");
    for (auto& n : call_rows_) n = 0;
    return x.rows() != 0;
  }

  static void check_outer_rows_(batch_view<const T, Space> x, row_index_view<Space> rows) {
    if (rows.rows() != x.rows() || rows.cols() != 1)
      throw shape_error(ddm::concat("ddm::routed_field: argument 'rows' has shape (", rows.rows(), ", ",
                                       rows.cols(), "), expected (", x.rows(), ", 1)"));
  }

  // The decision buffers of this call, reallocated only when B changes; the call's decision is
  // written there and becomes last_decision().
  routing_decision<T, Space>& next_decision_(index_t rows, double t) {
    const auto k = static_cast<index_t>(num_experts());
    last_is_step_start_ = false;
    auto& d = decision_;
    if (d.logits.rows() != rows) {
      d.logits = batch<T, Space>(ctx_, rows, k);
      d.probabilities = batch<T, Space>(ctx_, rows, k);
      d.weights = batch<T, Space>(ctx_, rows, k);
      d.selected = batch<std::uint8_t, Space>(ctx_, rows, k);
    }
    d.call = calls_;
    d.t = t;
    d.rows_per_expert.assign(num_experts(), 0);
    return d;
  }


  /// Whether the experts take all groups of a call at once (ddm::grouped_expert_set): then every
  /// selected expert's rows are gathered into a stack (sum_k n_k, D) before any is evaluated;
  /// otherwise each expert's rows are gathered into one (B, D) sub-batch reused by the next.
  static constexpr bool grouped = grouped_expert_set<Experts, T, Space>;

  // Steps 4 and 5 of a call (the header's), the same in every memory space: each expert that any
  // row selected gets one group, its rows gathered from x into `gathered` (rows [first, first + n)
  // when grouped, [0, n) otherwise; x itself when it has every row in order), with the original
  // row indices composed through `outer` when the field was given some; ddm::evaluate_groups
  // evaluates them (all at once when grouped, one by one otherwise). The space supplies where an
  // expert writes, output(k, first, n) -> (n, D) view, and what is done with it, combine(k, rows,
  // vk): the host scatter-adds each expert; the device writes a stack that one kernel combines
  // afterwards, and combines nothing here. `composed` has a row per selected pair.
  template <class Output, class Combine>
  void evaluate_experts_(batch_view<const T, Space> x, double t, const row_index_view<Space>* outer,
                         std::span<const index_t> offsets, batch_view<std::int32_t, Space> row_index,
                         batch_view<T, Space> gathered, batch_view<std::int32_t, Space> composed, Output&& output,
                         Combine&& combine) {
    const index_t b = x.rows();
    groups_.clear();
    for (std::size_t k = 0; k < num_experts(); ++k) {
      const index_t first = offsets[k];
      const index_t n = offsets[k + 1] - first;
      if (n == 0) continue;
      const row_index_view<Space> rows = row_index.subrows(first, n).as_const();
      expert_group<T, Space> group{k, x, rows, output(k, first, n)};
      if (n != b) {
        const auto xk = gathered.subrows(grouped ? first : 0, n);
        expert_grouping<Space>::gather(ctx_, x, rows, xk);
        group.x = xk.as_const();
      }
      if (outer != nullptr) {
        const auto c = composed.subrows(first, n);
        expert_grouping<Space>::gather(ctx_, *outer, rows, c);
        group.rows = c.as_const();
      }
      if constexpr (grouped) {
        groups_.push_back(group);
      } else {
        experts_.evaluate(k, group.x, t, group.v, group.rows);
        combine(k, rows, group.v.as_const());
        count_expert_(k, n);
      }
    }
    if constexpr (grouped) {
      ddm::evaluate_groups(experts_, t, std::span<const expert_group<T, Space>>(groups_));
      for (const auto& g : groups_) {
        const index_t first = offsets[g.expert];
        const index_t n = offsets[g.expert + 1] - first;
        combine(g.expert, row_index.subrows(first, n).as_const(), g.v.as_const());
        count_expert_(g.expert, n);
      }
    }
  }

  // A call with no rows: a collective expert set still takes part in the call's exchange.
  void evaluate_no_rows_(double t) {
    if constexpr (grouped && collective_expert_set<Experts>)
      ddm::evaluate_groups(experts_, t, std::span<const expert_group<T, Space>>());
  }

  void count_expert_(std::size_t k, index_t n) noexcept {
    call_rows_[k] = static_cast<std::size_t>(n);
    total_rows_[k] += static_cast<std::size_t>(n);
    ++total_calls_[k];
  }

  // Counts the call, completes its decision record and tells the observers.
  void end_call_(batch_view<const T, Space> x, double t, batch_view<T, Space> v) {
    const std::size_t call = calls_++;
    rows_routed_ += static_cast<std::size_t>(x.rows());
    auto& decision = decision_;
    decision.rows_per_expert.assign(call_rows_.begin(), call_rows_.end());
    if (!observers_.empty()) {
      const routing_event<T, Space> event{call,
                                          t,
                                          x,
                                          v.as_const(),
                                          decision.logits.cview(),
                                          decision.probabilities.cview(),
                                          decision.weights.cview(),
                                          decision.selected.cview(),
                                          std::span<const std::size_t>(call_rows_)};
      for (auto& o : observers_) o(event);
    }
  }

  Experts experts_;
  Router router_;
  Policy policy_;
  [[no_unique_address]] execution_context<Space> ctx_;
  double temperature_ = 1.0;

 private:
  routing_decision<T, Space> decision_;       // the last call's, unless it was marked as a step's start
  routing_decision<T, Space> step_decision_;  // the first call of the sampler's latest step
  bool last_is_step_start_ = false;           // the last call's decision is step_decision_
  std::vector<std::size_t> call_rows_;
  std::vector<std::size_t> total_rows_;
  std::vector<std::size_t> total_calls_;
  std::size_t calls_ = 0;
  std::size_t rows_routed_ = 0;
  std::vector<observer_type> observers_;
  std::vector<expert_group<T, Space>> groups_;  // the call's groups, when grouped
};

}  // namespace detail

/// experts + router + policy = a velocity field (see the header comment). This is the host one;
/// including <ddm/cuda.hpp> adds the specialization for ddm::cuda_space, with the same interface.
template <class Experts, class Router, class Policy, class T, class Space = host_space>
class routed_field : public detail::routed_field_base<Experts, Router, Policy, T, Space> {
  using base = detail::routed_field_base<Experts, Router, Policy, T, Space>;

 public:
  routed_field(Experts experts, Router router, Policy policy, execution_context<Space> ctx = {})
      : base(std::move(experts), std::move(router), std::move(policy), ctx) {
    offsets_.assign(this->num_experts() + 1, 0);
  }

  /// v = sum_k w_k(x, t) v_k(x, t) over the experts the policy selected for each row.
  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> v) { route_(x, t, v, nullptr); }

  /// The same, for a batch whose row i is row rows(i, 0) of a larger batch (per-sample
  /// conditioning): conditioned experts get those original indices.
  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> v, row_index_view<Space> rows) {
    base::check_outer_rows_(x, rows);
    route_(x, t, v, &rows);
  }

 private:
  void reshape_(index_t rows, index_t cols) {
    const auto k = static_cast<index_t>(this->num_experts());
    row_index_ = row_index_scratch_.get(this->ctx_, rows * k, 1);
    composed_ = composed_scratch_.get(this->ctx_, rows * k, 1);
    if constexpr (!base::grouped) {
      x_sub_ = x_scratch_.get(this->ctx_, rows, cols);
      v_sub_ = v_scratch_.get(this->ctx_, rows, cols);
    }
  }

  void route_(batch_view<const T, Space> x, double t, batch_view<T, Space> v, const row_index_view<Space>* outer) {
    if (!this->begin_call_(x, t, v)) {
      this->evaluate_no_rows_(t);
      return;
    }
    const index_t b = x.rows();
    const index_t d = x.cols();
    auto& ctx = this->ctx_;

    reshape_(b, d);
    auto& decision = this->next_decision_(b, t);
    this->router_(x, t, decision.logits.view());
    softmax_rows(ctx, decision.logits.cview(), this->temperature_, decision.probabilities.view(),
                 this->router_.name(), t);
    this->policy_.select(ctx, decision.probabilities.cview(), t, decision.weights.view(), decision.selected.view());
    expert_grouping<Space>::group(ctx, decision.selected.cview(), row_index_, std::span<index_t>(offsets_));

    if constexpr (base::grouped) {  // a stack: every group's rows and output exist at once
      const index_t pairs = std::max<index_t>(offsets_.back(), 1);
      x_sub_ = x_scratch_.get(ctx, pairs, d);
      v_sub_ = v_scratch_.get(ctx, pairs, d);
    }
    fill(ctx, v, T(0));
    this->evaluate_experts_(
        x, t, outer, std::span<const index_t>(offsets_), row_index_, x_sub_, composed_,
        [&](std::size_t, index_t first, index_t n) { return v_sub_.subrows(base::grouped ? first : 0, n); },
        [&](std::size_t k, row_index_view<Space> rows, batch_view<const T, Space> vk) {
          expert_grouping<Space>::scatter_add(ctx, v, decision.weights.cview(), static_cast<index_t>(k), rows, vk);
        });
    this->end_call_(x, t, v);
  }

  std::vector<index_t> offsets_;  // (K + 1), host
  detail::scratch_buffer<std::int32_t, Space> row_index_scratch_;
  detail::scratch_buffer<std::int32_t, Space> composed_scratch_;
  detail::scratch_buffer<T, Space> x_scratch_;
  detail::scratch_buffer<T, Space> v_scratch_;
  batch_view<std::int32_t, Space> row_index_;
  batch_view<std::int32_t, Space> composed_;
  batch_view<T, Space> x_sub_;
  batch_view<T, Space> v_sub_;
};

/// A routed field over batches of T in Space: make_routed_field<float>(experts, router, policy).
template <class T, class Space = host_space, class Experts, class Router, class Policy>
[[nodiscard]] routed_field<std::decay_t<Experts>, std::decay_t<Router>, std::decay_t<Policy>, T, Space>
make_routed_field(Experts&& experts, Router&& router, Policy&& policy, execution_context<Space> ctx = {}) {
  return routed_field<std::decay_t<Experts>, std::decay_t<Router>, std::decay_t<Policy>, T, Space>(
      std::forward<Experts>(experts), std::forward<Router>(router), std::forward<Policy>(policy), ctx);
}

}  // namespace ddm
