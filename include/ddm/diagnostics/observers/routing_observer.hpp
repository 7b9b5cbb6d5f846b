#pragma once
// The routing instruments attached to a sampler: an observer for ddm::sample() over a routed
// field that, at the start (x_i, t_i) of every measured step,
//
//   1. reads the routing decision the field took there: the field records its decision once per
//      call (ddm::routing_decision: probabilities, weights, selection, rows per expert), and
//      ddm::sample marks each step's first call, at (x_i, t_i), whose decision the field keeps as
//      step_decision(): Heun's corrector at t_{i+1}, a later stage, or another observer's calls
//      of the field at t_i (the L_eff observer's finite differences) do not replace it. Nothing
//      is decided twice: no router, softmax or policy call is the observer's;
//   2. evaluates all K experts on x_i (experts().evaluate(k, ...), the whole batch each: the
//      sampler itself evaluates only the selected ones), x_i being the step event's x_start (the
//      observer reads_step_start: ddm::sample keeps one copy of x_i per step for all observers),
//      and the blended velocity the step's own velocity e.v = v(x_i, t_i);
//   3. computes the expert disagreement d_r and its trajectory integral I_r, the angular deviation
//      of selected and non-selected experts (per step and pooled over the run), and, at the
//      alignment steps (by default those starting nearest to t = 0.3, 0.5, 0.7) and optionally at
//      every measured step, the ranks of the selected experts' centroids by distance from
//      phi(x0_hat), x0_hat = x_i - t_i v.
//
// Formulas are those of disagreement.hpp, angular_deviation.hpp and alignment.hpp. With every
// measured step (`every` = 1) the integral is I_r = sum_i |t_{i+1} - t_i| d_r(x_i, t_i); with
// every = n, measured step i stands for the steps up to the next measured one,
// I_r = sum_{measured i} |t_{min(i + n, N)} - t_i| d_r(x_i, t_i) (a left Riemann sum on the
// coarser grid).
//
// The observer never calls the routed field: it calls the field's experts, which it assumes to be
// pure functions of (x, t) (as the analytic DDM's and any trained model's are), so the sampled
// trajectory is bit-identical with and without it, and the field's counters do not see it. The
// decision it reads is the field's own, so it is the one the step used whatever the router
// (a stochastic one included). The blended velocity e.v is v(x_i, t_i) for every fixed-step
// integrator in ddm (Euler, Heun, DPM-Solver++); an adaptive integrator's internal steps do not
// start at the schedule's times, and the observer refuses them.
//
// Cost per measured step: K expert evaluations on the whole batch (K B expert row evaluations,
// counted in expert_evaluations()), O(K^2 D) per row for the disagreement, O(K D) for the angles,
// and at an alignment step one embedding of the batch and O(K E) per row. Unmeasured steps cost
// nothing here (the driver's copy of x_i is made at every step while the observer watches).
//
// On device views (Space = cuda_space, with <ddm/cuda.hpp> included) the observer runs unchanged:
// it calls the same free functions, whose device overloads (ddm/cuda/diagnostics/instruments/)
// compute the disagreement through Gram matrices (cuBLAS) and the angles and ranks in kernels,
// and bring back per step only the per-row results, each a wait.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/diagnostics/instruments/alignment.hpp"
#include "ddm/diagnostics/instruments/angular_deviation.hpp"
#include "ddm/diagnostics/instruments/disagreement.hpp"
#include "ddm/diagnostics/instruments/expert_views.hpp"
#include "ddm/diagnostics/statistics.hpp"
#include "ddm/flow/schedule.hpp"
#include "ddm/integrators/sample.hpp"
#include "ddm/routing/routed_field.hpp"

namespace ddm::diagnostics {

/// What the routing observer needs of a field: the parts of a ddm::routed_field it reads the
/// decisions from and evaluates the experts of.
template <class F, class T, class Space = host_space>
concept inspectable_routed_field = requires(F& f, const F& cf) {
  f.experts();
  { cf.step_decision() } -> std::convertible_to<const routing_decision<T, Space>*>;
  { cf.num_experts() } -> std::convertible_to<std::size_t>;
};

struct routing_observer_options {
  std::size_t every = 1;  ///< disagreement and angles at steps 0, every, 2 every, ...
  /// Times whose nearest steps (nearest_steps) get the alignment ranks; empty: none.
  std::vector<double> alignment_times{std::begin(default_alignment_times), std::end(default_alignment_times)};
  /// Also rank the selected experts at every measured step (alignment_profile()).
  bool alignment_every_step = false;
};

/// The batch summary of one measured step.
struct routing_step {
  std::size_t step = 0;                     ///< sampler step index i
  double t = 0.0;                           ///< t_i
  double disagreement_mean = 0.0;           ///< mean of d_r over the rows
  std::optional<double> selected_angle;     ///< pooled mean angle (radians) of the selected experts
  std::optional<double> unselected_angle;   ///< ... of the others; empty when none (full ensemble)
  std::optional<double> angular_gap;        ///< (unselected - selected) / unselected; empty when undefined
  std::optional<double> mean_rank;          ///< pooled mean rank of the selected experts, when ranked here
  double mean_selected = 0.0;               ///< selected experts per row, averaged over the rows
};

template <class T, class Field, class Embedding = identity_embedding, class Space = host_space>
class routing_observer {
  static_assert(inspectable_routed_field<Field, T, Space>,
                "ddm::diagnostics::routing_observer: the field has no experts(), step_decision() and num_experts() "
                "members; expected a ddm::routed_field (make_routed_field)");
  static_assert(embedding<Embedding, T, Space>,
                "ddm::diagnostics::routing_observer: Embedding is not a ddm::diagnostics::embedding (dim(D) and "
                "e(ctx, in, out))");

 public:
  /// ddm::sample gives the observer x_i, the state each step's velocity was evaluated at.
  static constexpr bool reads_step_start = true;

  /// Watches the sampling of `field` (held by reference) along `schedule`. `centroids` (K, E) are
  /// the centres of the experts' training clusters in the embedding space of `phi`; an empty view
  /// turns the alignment ranks off.
  routing_observer(const execution_context<Space>& ctx, Field& field, const time_schedule& schedule,
                   batch_view<const T, Space> centroids, routing_observer_options options = {}, Embedding phi = {})
      : field_(&field), schedule_(schedule), options_(std::move(options)), phi_(std::move(phi)), ctx_(ctx) {
    constexpr const char* where = "ddm::diagnostics::routing_observer";
    if (options_.every < 1) ddm::fail_argument(where, "every", options_.every, ">= 1");
    const auto k = static_cast<index_t>(field.num_experts());
    if (k < 2) ddm::fail_argument(where, "field.num_experts()", k, ">= 2 (disagreement needs two experts)");
    if (!centroids.empty()) {
      if (centroids.rows() != k)
        throw shape_error(ddm::concat(where, ": argument 'centroids' has ", centroids.rows(),
                                              " rows, expected one per expert (", k, ")"));
      centroids_ = batch<T, Space>(ctx_, centroids.rows(), centroids.cols());
      copy(ctx_, centroids_.view(), centroids);
      alignment_steps_ = nearest_steps(schedule_, options_.alignment_times);
    } else if (options_.alignment_every_step) {
      throw argument_error(ddm::concat(where, ": options.alignment_every_step is set but 'centroids' is empty; "
                                               "expected the (K, E) centroids of the experts' clusters"));
    }
  }

  /// The same in the space's default context.
  routing_observer(Field& field, const time_schedule& schedule, batch_view<const T, Space> centroids,
                   routing_observer_options options = {}, Embedding phi = {})
      : routing_observer(execution_context<Space>{}, field, schedule, centroids, std::move(options), std::move(phi)) {}

  /// Called by sample() before the first step: checks the schedule and clears earlier records.
  void on_start(batch_view<const T, Space> x, double t0) {
    constexpr const char* where = "ddm::diagnostics::routing_observer::on_start";
    ddm::require_non_empty(where, "x", x);
    if (t0 != schedule_.front())
      throw argument_error(ddm::concat(where, ": the run starts at t = ", t0, ", but the observer was made for a ",
                                               "schedule starting at ", schedule_.front(), "; expected the same schedule"));
    const auto k = static_cast<index_t>(field_->num_experts());
    if (expert_v_.rows() != k * x.rows() || expert_v_.cols() != x.cols())
      expert_v_ = batch<T, Space>(ctx_, k * x.rows(), x.cols());
    started_ = true;
    decision_ = nullptr;
    steps_.clear();
    integrated_.reset();
    angles_ = angular_deviation_summary{};
    alignment_.clear();
    profile_.clear();
    expert_evaluations_ = 0;
  }

  void operator()(const step_event<T, Space>& e) {
    constexpr const char* where = "ddm::diagnostics::routing_observer";
    if (!started_)
      throw argument_error(ddm::concat(where, ": a step event arrived before on_start(x, t0); expected the "
                                               "observer to be passed to ddm::sample(), which calls on_start first"));
    if (e.index >= schedule_.steps() || e.t != schedule_[e.index] || e.t_next != schedule_[e.index + 1])
      throw argument_error(ddm::concat(where, ": step ", e.index, " runs from t = ", e.t, " to ", e.t_next,
                                               ", which is not a step of the observer's schedule; expected the same "
                                               "fixed-step schedule as the one sampled"));
    if (measured_(e.index)) measure_(e);
  }

  /// Per measured step, in step order.
  [[nodiscard]] const std::vector<routing_step>& steps() const noexcept { return steps_; }
  /// (B) I_r: trajectory-integrated disagreement of each row (the weighting is in the header).
  [[nodiscard]] const std::vector<double>& integrated_disagreement() const noexcept { return integrated_.total(); }
  /// Angles pooled over every measured step and row.
  [[nodiscard]] const angular_deviation_summary& angular() const noexcept { return angles_; }
  /// The ranks at the alignment steps (one result per alignment step reached, with its t).
  [[nodiscard]] const std::vector<alignment_result>& alignment() const noexcept { return alignment_; }
  /// Mean rank pooled over every selected (row, expert) pair of the alignment steps; empty when none.
  [[nodiscard]] std::optional<double> alignment_mean_rank() const {
    double sum = 0.0;
    std::size_t pairs = 0;
    for (const auto& a : alignment_)
      if (const auto m = a.pooled_mean_rank()) {
        sum += *m * static_cast<double>(a.pairs);
        pairs += a.pairs;
      }
    return pairs > 0 ? std::optional<double>(sum / static_cast<double>(pairs)) : std::nullopt;
  }
  /// Ranks at every step where they were computed, in step order (when
  /// options.alignment_every_step: the measured steps and the alignment steps).
  [[nodiscard]] const alignment_profile& profile() const noexcept { return profile_; }
  /// The steps whose start times are nearest to options.alignment_times.
  [[nodiscard]] const std::vector<std::size_t>& alignment_steps() const noexcept { return alignment_steps_; }
  /// Expert row evaluations made by the observer (K B per measured step).
  [[nodiscard]] std::size_t expert_evaluations() const noexcept { return expert_evaluations_; }
  [[nodiscard]] const routing_observer_options& options() const noexcept { return options_; }

  /// The field's decision at the last measured step's start, (B, K) each (valid until the field's
  /// next step), and every expert's velocity there, (K B, D) with expert k in rows
  /// [k B, (k + 1) B) (valid until the next measured step).
  [[nodiscard]] batch_view<const T, Space> last_probabilities() const noexcept {
    return decision_ != nullptr ? decision_->probabilities.cview() : batch_view<const T, Space>{};
  }
  [[nodiscard]] batch_view<const T, Space> last_weights() const noexcept {
    return decision_ != nullptr ? decision_->weights.cview() : batch_view<const T, Space>{};
  }
  [[nodiscard]] batch_view<const std::uint8_t, Space> last_selected() const noexcept {
    return decision_ != nullptr ? decision_->selected.cview() : batch_view<const std::uint8_t, Space>{};
  }
  [[nodiscard]] batch_view<const T, Space> last_expert_velocities() const noexcept { return expert_v_.cview(); }

 private:
  [[nodiscard]] bool is_alignment_step_(std::size_t i) const {
    for (std::size_t s : alignment_steps_)
      if (s == i) return true;
    return false;
  }
  [[nodiscard]] bool measured_(std::size_t i) const { return i % options_.every == 0 || is_alignment_step_(i); }

  void measure_(const step_event<T, Space>& e) {
    // A routed field whose experts, router or policy fail their concepts has already stopped the
    // build with its static_assert, which names the fix; compiling the measurement would only add
    // errors from deep inside the routing code after it.
    if constexpr (std::remove_cvref_t<Field>::components_valid) measure_valid_(e);
  }

  void measure_valid_(const step_event<T, Space>& e) {
    constexpr const char* where = "ddm::diagnostics::routing_observer";
    const double t = e.t;
    const auto x = e.x_start;
    if (x.empty())
      throw argument_error(ddm::concat(where, ": step ", e.index, " has no x_start; expected the event of a ",
                                               "ddm::sample() run, which keeps x_i for observers that read it"));
    ddm::require_same_shape(where, "x_start", x, e.v);
    const index_t b = x.rows();
    const std::size_t k_count = field_->num_experts();

    // 1. The decision the field took at (x_i, t_i), the step's first call.
    const routing_decision<T, Space>* decision = field_->step_decision();
    if (decision == nullptr || decision->t != t)
      throw argument_error(ddm::concat(where, ": the field holds no decision for the start of step ", e.index,
                                               " (t = ", t, "); expected ddm::sample() to call this routed field "
                                               "itself, not through a wrapper, so that it marks each step's first call"));
    if (decision->selected.rows() != b)
      throw shape_error(ddm::concat(where, ": the field's decision at t = ", t, " has ", decision->selected.rows(),
                                            " rows, expected the sampled batch's ", b));
    decision_ = decision;
    const auto selected = decision->selected.cview();

    // 2. Every expert on the whole batch.
    for (std::size_t k = 0; k < k_count; ++k)
      field_->experts().evaluate(k, x, t, expert_v_.view().subrows(static_cast<index_t>(k) * b, b));
    expert_evaluations_ += k_count * static_cast<std::size_t>(b);
    const auto views = split_stacked(expert_v_.cview(), static_cast<index_t>(k_count));
    const std::span<const batch_view<const T, Space>> experts(views);

    // 3. The instruments.
    routing_step rec;
    rec.step = e.index;
    rec.t = t;
    if (e.index % options_.every == 0) {
      const auto d = expert_disagreement(ctx_, experts);
      const std::size_t next = std::min(e.index + options_.every, schedule_.steps());
      integrated_.add(t, schedule_[next], d);
      double s = 0.0;
      for (double v : d) s += v;
      rec.disagreement_mean = s / static_cast<double>(d.size());

      const auto a = angular_deviation(ctx_, experts, e.v, selected);
      angles_.add(a);
      angular_deviation_summary one;
      one.add(a);
      rec.selected_angle = one.selected_mean();
      rec.unselected_angle = one.unselected_mean();
      rec.angular_gap = one.relative_gap();
    } else {
      rec.disagreement_mean = std::numeric_limits<double>::quiet_NaN();
    }
    rec.mean_selected = static_cast<double>(decision->selected_pairs()) / static_cast<double>(b);

    const bool at_alignment = is_alignment_step_(e.index);
    if (!centroids_.empty() && (at_alignment || (options_.alignment_every_step && e.index % options_.every == 0))) {
      auto r = alignment_ranks(ctx_, x, t, e.v, selected, centroids_.cview(), phi_);
      rec.mean_rank = r.pooled_mean_rank();
      if (options_.alignment_every_step) profile_.add(r);
      if (at_alignment) alignment_.push_back(std::move(r));
    }
    if (e.index % options_.every == 0 || rec.mean_rank) steps_.push_back(std::move(rec));
  }

  Field* field_;
  time_schedule schedule_;
  routing_observer_options options_;
  Embedding phi_;
  execution_context<Space> ctx_;
  batch<T, Space> centroids_;
  std::vector<std::size_t> alignment_steps_;

  bool started_ = false;
  const routing_decision<T, Space>* decision_ = nullptr;  // the field's, at the last measured step
  batch<T, Space> expert_v_;  // (K B, D) expert k in rows [k B, (k + 1) B)

  std::vector<routing_step> steps_;
  ddm::diagnostics::integrated_disagreement integrated_;
  angular_deviation_summary angles_;
  std::vector<alignment_result> alignment_;
  alignment_profile profile_;
  std::size_t expert_evaluations_ = 0;
};

/// A routing_observer for batches of T, deducing the field's type; the context first, as every
/// diagnostic takes it.
template <class T, class Space = host_space, class Field, class Embedding = identity_embedding>
[[nodiscard]] routing_observer<T, Field, Embedding, Space> make_routing_observer(
    const execution_context<Space>& ctx, Field& field, const time_schedule& schedule,
    batch_view<const T, Space> centroids, routing_observer_options options = {}, Embedding phi = {}) {
  return routing_observer<T, Field, Embedding, Space>(ctx, field, schedule, centroids, std::move(options),
                                                      std::move(phi));
}

/// The same in the space's default context.
template <class T, class Space = host_space, class Field, class Embedding = identity_embedding>
[[nodiscard]] routing_observer<T, Field, Embedding, Space> make_routing_observer(
    Field& field, const time_schedule& schedule, batch_view<const T, Space> centroids,
    routing_observer_options options = {}, Embedding phi = {}) {
  return routing_observer<T, Field, Embedding, Space>(execution_context<Space>{}, field, schedule, centroids,
                                                      std::move(options), std::move(phi));
}

}  // namespace ddm::diagnostics
