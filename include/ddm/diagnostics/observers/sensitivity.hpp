#pragma once
// Trajectory sensitivity L_eff: an observer for ddm::sample() that measures, at every step (or
// every n-th), how strongly the field amplifies perturbations of the current state, per row.
//
// Step i of the sampler goes from (x_i, t_i) to (x_{i+1}, t_{i+1}) and evaluates the field at
// (x_i, t_i) first; the observer measures there, at the same point as the step's velocity. With
// the measure chosen in the options:
//
//     frobenius            L_r = sqrt(||J_r||_F^2 / D)   RMS singular value (Hutchinson)
//     spectral_norm        L_r = sigma_max(J_r)           needs the field's vjp
//     dominant_eigenvalue  L_r = |lambda_max(J_r)|        power iteration on J
//
// For each measured step j it records the per-row values, their median, quartiles Q1 and Q3 and
// IQR_j = Q3 - Q1 across the batch (type-7 quantiles, statistics.hpp), and the cumulative IQR
//
//     C_j = sum over measured steps j' <= j of IQR_j'
//
// (a running sum in step order; C at the last measured step is cumulative_iqr()). row_mean()
// averages each row's values over the measured steps, a per-row score for bin_by_score.
//
// The observer calls the field between steps. The field must therefore be a pure function of
// (x, t) (as every velocity field of a sampler is), and then the trajectory is bit-identical to
// one sampled without the observer. Side effects of the field itself (call counters, a routed
// field's last decision) do see the extra calls. The field is held by reference and must outlive
// the observer.
//
// x_i is the step event's x_start (the observer reads_step_start: ddm::sample keeps one copy of
// x_i per step, shared by every observer that reads it).
//
// Cost per measured step: the estimator's (frobenius: P Jacobian-vector products; spectral norm:
// up to max_iterations (jvp + vjp); eigenvalue: up to max_iterations products). Unmeasured steps
// cost nothing here.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/field.hpp"
#include "ddm/diagnostics/jacobian/dominant_eigenvalue.hpp"
#include "ddm/diagnostics/jacobian/hutchinson.hpp"
#include "ddm/diagnostics/jacobian/power_iteration.hpp"
#include "ddm/diagnostics/jacobian/spectral_norm.hpp"
#include "ddm/diagnostics/statistics.hpp"
#include "ddm/integrators/sample.hpp"

namespace ddm::diagnostics {

enum class sensitivity_measure { frobenius, spectral_norm, dominant_eigenvalue };

[[nodiscard]] constexpr const char* to_string(sensitivity_measure m) noexcept {
  switch (m) {
    case sensitivity_measure::frobenius: return "frobenius";
    case sensitivity_measure::spectral_norm: return "spectral_norm";
    case sensitivity_measure::dominant_eigenvalue: return "dominant_eigenvalue";
  }
  return "?";
}

struct sensitivity_options {
  sensitivity_measure measure = sensitivity_measure::frobenius;
  std::size_t every = 1;  ///< measure at steps 0, every, 2 every, ...
  hutchinson_options hutchinson{.probes = 4};
  power_iteration_options power{.max_iterations = 30, .tolerance = 1e-3};
};

/// The batch statistics of one measured step.
struct sensitivity_step {
  std::size_t step = 0;         ///< sampler step index i
  double t = 0.0;               ///< t_i, where the state was measured
  double median = 0.0;
  double q1 = 0.0;
  double q3 = 0.0;
  double iqr = 0.0;
  double cumulative_iqr = 0.0;  ///< sum of iqr over measured steps up to this one
};

template <class T, class Field, class Space = host_space>
class trajectory_sensitivity {
 public:
  /// Watches a sampler of `field` (held by reference).
  /// ddm::sample gives the observer x_i, the state each step's velocity was evaluated at.
  static constexpr bool reads_step_start = true;

  /// The same in the space's default context.
  explicit trajectory_sensitivity(Field& field, sensitivity_options options = {})
      : trajectory_sensitivity(execution_context<Space>{}, field, options) {}

  trajectory_sensitivity(const execution_context<Space>& ctx, Field& field, sensitivity_options options = {})
      : field_(&field), options_(options), ctx_(ctx) {
    require_velocity_field<Field, T, Space>();
    if (options.every < 1) ddm::fail_argument("ddm::diagnostics::trajectory_sensitivity", "every", options.every, ">= 1");
    if (options.measure == sensitivity_measure::spectral_norm && !has_vjp<Field, T, Space>)
      throw argument_error(
          "ddm::diagnostics::trajectory_sensitivity: argument 'options.measure' = spectral_norm, but the field has "
          "no member vjp(x, t, u, out); expected a field with ddm::has_vjp, or the frobenius / dominant_eigenvalue "
          "measure");
    detail::check_probes("ddm::diagnostics::trajectory_sensitivity", options.hutchinson.probes);
    detail::check_power_options("ddm::diagnostics::trajectory_sensitivity", options.power);
  }

  /// Called by sample() before the first step: clears earlier records.
  void on_start(batch_view<const T, Space> x, double /*t0*/) {
    ddm::require_non_empty("ddm::diagnostics::trajectory_sensitivity::on_start", "x", x);
    if (rows_ != x.rows() || cols_ != x.cols()) {
      rows_ = x.rows();
      cols_ = x.cols();
      hutchinson_.reset();
      power_.reset();
      spectral_.reset();
    }
    started_ = true;
    steps_.clear();
    values_.clear();
    field_evaluations_ = 0;
    exact_products_ = 0;
  }

  void operator()(const step_event<T, Space>& e) {
    if (!started_)
      throw argument_error("ddm::diagnostics::trajectory_sensitivity: a step event arrived before on_start(x, t0); "
                           "expected the observer to be passed to ddm::sample(), which calls on_start first");
    if (e.index % options_.every == 0) measure_(e);
  }

  /// The per-step batch statistics, in step order.
  [[nodiscard]] const std::vector<sensitivity_step>& steps() const noexcept { return steps_; }
  /// values()[j][r]: L_eff of row r at measured step j.
  [[nodiscard]] const std::vector<std::vector<double>>& values() const noexcept { return values_; }
  /// The cumulative IQR at the last measured step (0 before any).
  [[nodiscard]] double cumulative_iqr() const noexcept { return steps_.empty() ? 0.0 : steps_.back().cumulative_iqr; }
  /// Each row's mean L_eff over the measured steps.
  [[nodiscard]] std::vector<double> row_mean() const {
    if (values_.empty()) return {};
    std::vector<double> mean(values_.front().size(), 0.0);
    for (const auto& step : values_)
      for (std::size_t r = 0; r < mean.size(); ++r) mean[r] += step[r];
    for (double& m : mean) m /= static_cast<double>(values_.size());
    return mean;
  }
  [[nodiscard]] std::size_t field_evaluations() const noexcept { return field_evaluations_; }
  [[nodiscard]] std::size_t exact_products() const noexcept { return exact_products_; }
  [[nodiscard]] const sensitivity_options& options() const noexcept { return options_; }

 private:
  void measure_(const step_event<T, Space>& e) {
    const std::size_t step = e.index;
    const double t = e.t;
    const auto x = e.x_start;
    if (x.empty() || x.rows() != rows_ || x.cols() != cols_)
      throw argument_error(ddm::concat("ddm::diagnostics::trajectory_sensitivity: step ", step, " has x_start of shape (",
                                       x.rows(), ", ", x.cols(), "), expected the (", rows_, ", ", cols_,
                                       ") state of the ddm::sample() run that called on_start"));
    // Each measured step gets its own block of Philox streams.
    const std::uint64_t block = static_cast<std::uint64_t>(step) << 32;
    std::vector<double> l;
    switch (options_.measure) {
      case sensitivity_measure::frobenius: {
        if (!hutchinson_) hutchinson_.emplace(ctx_, x.rows(), x.cols(), options_.hutchinson);
        auto r = (*hutchinson_)(*field_, x, t, options_.hutchinson.stream + block);
        for (double& m : r.mean) m = std::sqrt(m);
        l = std::move(r.mean);
        account_(r.field_evaluations, r.exact_products);
        break;
      }
      case sensitivity_measure::dominant_eigenvalue: {
        if (!power_) power_.emplace(ctx_, x.rows(), x.cols(), options_.power);
        auto r = (*power_)(*field_, x, t, options_.power.stream + block);
        for (double& m : r.value) m = std::abs(m);
        l = std::move(r.value);
        account_(r.field_evaluations, r.exact_products);
        break;
      }
      case sensitivity_measure::spectral_norm: {
        if constexpr (has_vjp<Field, T, Space>) {
          if (!spectral_) spectral_.emplace(ctx_, x.rows(), x.cols(), options_.power);
          auto r = (*spectral_)(*field_, x, t, options_.power.stream + block);
          l = std::move(r.value);
          account_(r.field_evaluations, r.exact_products);
        }
        break;
      }
    }
    const double ps[] = {0.25, 0.5, 0.75};
    const auto q = quantiles(l, ps);
    sensitivity_step s;
    s.step = step;
    s.t = t;
    s.q1 = q[0];
    s.median = q[1];
    s.q3 = q[2];
    s.iqr = q[2] - q[0];
    s.cumulative_iqr = cumulative_iqr() + s.iqr;
    steps_.push_back(s);
    values_.push_back(std::move(l));
  }

  void account_(std::size_t evaluations, std::size_t exact) {
    field_evaluations_ += evaluations;
    exact_products_ += exact;
  }

  Field* field_;
  sensitivity_options options_;
  execution_context<Space> ctx_;
  index_t rows_ = 0;
  index_t cols_ = 0;
  bool started_ = false;
  std::optional<hutchinson_estimator<T, Space>> hutchinson_;
  std::optional<eigenvalue_estimator<T, Space>> power_;
  std::optional<spectral_norm_estimator<T, Space>> spectral_;
  std::vector<sensitivity_step> steps_;
  std::vector<std::vector<double>> values_;
  std::size_t field_evaluations_ = 0;
  std::size_t exact_products_ = 0;
};

/// A trajectory_sensitivity observer for batches of T, deducing the field's type.
template <class T, class Space = host_space, class Field>
[[nodiscard]] trajectory_sensitivity<T, Field, Space> make_trajectory_sensitivity(const execution_context<Space>& ctx,
                                                                                 Field& field,
                                                                                 sensitivity_options options = {}) {
  return trajectory_sensitivity<T, Field, Space>(ctx, field, options);
}

/// The same in the space's default context.
template <class T, class Space = host_space, class Field>
[[nodiscard]] trajectory_sensitivity<T, Field, Space> make_trajectory_sensitivity(Field& field,
                                                                                 sensitivity_options options = {}) {
  return trajectory_sensitivity<T, Field, Space>(execution_context<Space>{}, field, options);
}

}  // namespace ddm::diagnostics
