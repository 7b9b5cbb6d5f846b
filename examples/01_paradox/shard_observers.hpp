#pragma once
// What a rank measures on its shard of the batch when ddm-paradox runs under mpirun
// (distributed.hpp), kept per row so that the batch statistics can be computed after the rows of
// every rank are gathered, in the same order and so with the same bits as one process:
//
// shard_sensitivity    L_eff by Hutchinson's estimator, the arithmetic of
//                      ddm::diagnostics::trajectory_sensitivity (frobenius), with one difference:
//                      row r of a probe is variate (first + r) * D + c of its Philox stream, the
//                      row's index in the whole batch. The library's estimator indexes probe rows
//                      by their place in the batch it is given, so on a shard it would draw rows
//                      0 .. n - 1 of the probes instead of the shard's own.
// shard_routing_rows   after the routing observer at each step, the per-row angular deviation
//                      and alignment ranks; the routing observer keeps those only pooled over its
//                      rows (sums in row order, which shards would add in another order).
//
// No MPI here: the gathering is the source's (distributed.hpp).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include <ddm/ddm.hpp>

namespace paradox {

namespace dd = ddm::diagnostics;

template <class T, class Field>
class shard_sensitivity {
 public:
  static constexpr bool reads_step_start = true;

  /// L_eff of rows [first, first + n) of a batch of total_rows rows, n being the rows sampled here.
  shard_sensitivity(const ddm::host_context& ctx, Field& field, dd::sensitivity_options options, ddm::index_t first,
                    ddm::index_t total_rows)
      : ctx_(ctx), field_(&field), options_(options), first_(first), total_(total_rows) {
    constexpr const char* where = "paradox::shard_sensitivity";
    if (options.measure != dd::sensitivity_measure::frobenius)
      ddm::fail_argument(where, "options.measure", dd::to_string(options.measure), "frobenius (the study's measure)");
    if (options.every < 1) ddm::fail_argument(where, "options.every", options.every, ">= 1");
    if (options.hutchinson.probes < 2) ddm::fail_argument(where, "options.hutchinson.probes", options.hutchinson.probes, ">= 2");
  }

  void on_start(ddm::batch_view<const T> x, double /*t0*/) {
    if (first_ < 0 || first_ + x.rows() > total_)
      ddm::throw_error<ddm::argument_error>("paradox::shard_sensitivity: rows [", first_, ", ", first_ + x.rows(),
                                            ") are not rows of the batch of ", total_);
    if (!products_ || products_->rows() != x.rows() || products_->cols() != x.cols()) {
      products_.emplace(ctx_, x.rows(), x.cols(), options_.hutchinson.derivative);
      z_all_ = ddm::batch<T>(total_, x.cols());
      z_ = ddm::batch<T>(x.rows(), x.cols());
      jz_ = ddm::batch<T>(x.rows(), x.cols());
      q_.assign(static_cast<std::size_t>(x.rows()), 0.0);
    }
    when_.clear();
    values_.clear();
  }

  void operator()(const ddm::step_event<T>& e) {
    if (e.index % options_.every != 0) return;
    const auto x = e.x_start;
    const auto rows = static_cast<std::size_t>(x.rows());
    const double inv_d = 1.0 / static_cast<double>(x.cols());
    // The same streams as trajectory_sensitivity: a block per measured step, a stream per probe.
    const std::uint64_t stream = options_.hutchinson.stream + (static_cast<std::uint64_t>(e.index) << 32);
    std::vector<double> mean(rows, 0.0);
    for (std::size_t p = 0; p < options_.hutchinson.probes; ++p) {
      dd::fill_probe(ctx_, z_all_.view(), options_.hutchinson.kind, options_.hutchinson.seed, stream + p);
      ddm::copy(ctx_, z_.view(), z_all_.cview().subrows(first_, x.rows()));
      products_->jvp(*field_, x, e.t, z_.cview(), jz_.view());
      ddm::row_squared_norms(ctx_, jz_.cview(), std::span<double>(q_));
      const double n = static_cast<double>(p + 1);
      for (std::size_t r = 0; r < rows; ++r) {
        const double q = q_[r] * inv_d;
        const double delta = q - mean[r];
        mean[r] += delta / n;
      }
    }
    ddm::require_finite_rows("paradox::shard_sensitivity", "the estimate of ||J||_F^2 / D", mean, e.t);
    for (double& m : mean) m = std::sqrt(m);
    when_.emplace_back(e.index, e.t);
    values_.push_back(std::move(mean));
  }

  /// (step index, t) of each measured step.
  [[nodiscard]] const std::vector<std::pair<std::size_t, double>>& when() const noexcept { return when_; }
  /// values()[j][r]: L_eff of this rank's row r at measured step j.
  [[nodiscard]] const std::vector<std::vector<double>>& values() const noexcept { return values_; }

 private:
  ddm::host_context ctx_;
  Field* field_;
  dd::sensitivity_options options_;
  ddm::index_t first_;
  ddm::index_t total_;
  std::optional<dd::jacobian_products<T>> products_;
  ddm::batch<T> z_all_, z_, jz_;
  std::vector<double> q_;
  std::vector<std::pair<std::size_t, double>> when_;
  std::vector<std::vector<double>> values_;
};

/// trajectory_sensitivity's batch statistics of the whole batch, from its per-step values:
/// the quartiles of each step, the running sum of the IQR, and each row's mean over the steps.
struct sensitivity_summary {
  std::vector<dd::sensitivity_step> steps;
  std::vector<double> row_mean;
};

inline sensitivity_summary summarize_sensitivity(const std::vector<std::pair<std::size_t, double>>& when,
                                                 const std::vector<std::vector<double>>& values) {
  sensitivity_summary out;
  const double ps[] = {0.25, 0.5, 0.75};
  for (std::size_t j = 0; j < values.size(); ++j) {
    const auto q = dd::quantiles(values[j], ps);
    dd::sensitivity_step s;
    s.step = when[j].first;
    s.t = when[j].second;
    s.q1 = q[0];
    s.median = q[1];
    s.q3 = q[2];
    s.iqr = q[2] - q[0];
    s.cumulative_iqr = (out.steps.empty() ? 0.0 : out.steps.back().cumulative_iqr) + s.iqr;
    out.steps.push_back(s);
  }
  if (!values.empty()) {
    out.row_mean.assign(values.front().size(), 0.0);
    for (const auto& step : values)
      for (std::size_t r = 0; r < out.row_mean.size(); ++r) out.row_mean[r] += step[r];
    for (double& m : out.row_mean) m /= static_cast<double>(values.size());
  }
  return out;
}

/// Watches a sampler after a routing observer (`routing`, passed to ddm::sample before this one)
/// and keeps, per step, the per-row angular deviation and alignment ranks of this rank's rows,
/// computed by the same functions from the same inputs as the routing observer's.
template <class T, class Routing>
class shard_routing_rows {
 public:
  struct step_rows {
    std::size_t step = 0;
    dd::angular_deviation_result angles;
    dd::alignment_result ranks;
    bool alignment_step = false;  ///< one of routing.alignment_steps()
  };

  shard_routing_rows(const ddm::host_context& ctx, const Routing& routing, std::size_t experts,
                     ddm::batch_view<const T> centroids)
      : ctx_(ctx), routing_(&routing), experts_(experts), centroids_(centroids) {
    if (routing.options().every != 1 || !routing.options().alignment_every_step)
      throw ddm::argument_error(
          "paradox::shard_routing_rows: expected a routing observer that measures every step with the alignment "
          "ranks at every step (the study's options)");
  }

  void on_start(ddm::batch_view<const T> /*x*/, double /*t0*/) { steps_.clear(); }

  void operator()(const ddm::step_event<T>& e) {
    step_rows s;
    s.step = e.index;
    const auto selected = routing_->last_selected();
    s.angles = dd::angular_deviation(ctx_, routing_->last_expert_velocities(), static_cast<ddm::index_t>(experts_),
                                     e.v, selected);
    s.ranks = dd::alignment_ranks(ctx_, e.x_start, e.t, e.v, selected, centroids_);
    for (std::size_t a : routing_->alignment_steps()) s.alignment_step = s.alignment_step || a == e.index;
    steps_.push_back(std::move(s));
  }

  [[nodiscard]] const std::vector<step_rows>& steps() const noexcept { return steps_; }

 private:
  ddm::host_context ctx_;
  const Routing* routing_;
  std::size_t experts_;
  ddm::batch_view<const T> centroids_;
  std::vector<step_rows> steps_;
};

}  // namespace paradox
