#pragma once
// Step-refinement disagreement Delta_refine: how much the sample changes when the number of
// steps is doubled. From the same noise, sample with a coarse schedule (N steps) and a fine one
// (2N steps, by default every coarse step cut in half), and report per row
//
//     Delta_r = RMS_j( x_N(r, j) - x_2N(r, j) ) / s,     RMS_j(a) = sqrt(sum_j a_j^2 / D)
//
// The normalizer s is an explicit option: `data_rms` when it is > 0 (for instance the RMS of the
// training data, or 1 for unit-variance latents); by default (data_rms = 0) the RMS over all
// B x D values of the fine samples, s = sqrt(sum_{r,j} x_2N(r, j)^2 / (B D)), standing in for the
// RMS of the data. Delta is then a relative, dimensionless discrepancy: 0 when doubling the steps
// changes nothing, 0.05 when it moves the sample by 5% of the data's scale.
//
// Cost: two sampling runs, N and 2N steps (3x the evaluations of the coarse run for fixed-step
// integrators).

#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/row_ops.hpp"
#include "ddm/flow/schedule.hpp"
#include "ddm/integrators/sample.hpp"

namespace ddm::diagnostics {

struct refinement_options {
  /// The normalizer s: > 0 to use it as given, 0 for the RMS of the fine samples.
  double data_rms = 0.0;
  sample_options sampling{};
};

struct refinement_result {
  std::vector<double> per_row;        ///< (B) Delta_r
  double mean = 0.0;                  ///< mean of Delta_r over the rows
  double normalizer = 0.0;            ///< the s that was used
  std::size_t field_evaluations = 0;  ///< of both runs
};

/// The schedule with every step cut in half at its midpoint in t (2N steps from N).
[[nodiscard]] inline time_schedule refine(const time_schedule& s) {
  std::vector<double> t;
  t.reserve(2 * s.steps() + 1);
  for (std::size_t i = 0; i < s.steps(); ++i) {
    t.push_back(s[i]);
    t.push_back(0.5 * (s[i] + s[i + 1]));
  }
  t.push_back(s.back());
  return time_schedule(std::move(t));
}

/// Delta_r between sampling `noise` with `coarse` and with `fine`.
template <class Field, class T, class Space, class Integrator>
[[nodiscard]] refinement_result step_refinement(const execution_context<Space>& ctx, Field&& field,
                                                batch_view<const T, Space> noise, const time_schedule& coarse,
                                                const time_schedule& fine, const Integrator& integ,
                                                refinement_options options = {}) {
  const char* where = "ddm::diagnostics::step_refinement";
  ddm::require_non_empty(where, "noise", noise);
  if (!(options.data_rms >= 0.0) || !std::isfinite(options.data_rms))
    ddm::fail_argument(where, "data_rms", options.data_rms, "a finite value >= 0 (0 = RMS of the fine samples)");
  if (coarse.front() != fine.front() || coarse.back() != fine.back())
    throw schedule_error(ddm::concat(where, ": the coarse schedule runs from ", coarse.front(), " to ",
                                             coarse.back(), " and the fine one from ", fine.front(), " to ", fine.back(),
                                             ", expected the same endpoints"));
  const auto rows = static_cast<std::size_t>(noise.rows());
  batch<T, Space> a(ctx, noise.rows(), noise.cols());
  batch<T, Space> b(ctx, noise.rows(), noise.cols());
  copy(ctx, a.view(), noise);
  copy(ctx, b.view(), noise);
  refinement_result result;
  result.field_evaluations += sample(ctx, options.sampling, field, a.view(), coarse, integ).field_evaluations;
  result.field_evaluations += sample(ctx, options.sampling, field, b.view(), fine, integ).field_evaluations;

  std::vector<double> sq(rows);
  const double inv_d = 1.0 / static_cast<double>(noise.cols());
  double s = options.data_rms;
  if (s == 0.0) {
    row_squared_norms(ctx, b.cview(), std::span<double>(sq));
    double total = 0;
    for (double v : sq) total += v;
    s = std::sqrt(total * inv_d / static_cast<double>(rows));
    if (!(s > 0.0) || !std::isfinite(s))
      throw argument_error(ddm::concat(where, ": the RMS of the fine samples is ", s,
                                               ", which cannot normalize; expected options.data_rms > 0 to be given"));
  }
  result.normalizer = s;
  lincomb(ctx, a.view(), {1.0, -1.0}, a, b);
  row_squared_norms(ctx, a.cview(), std::span<double>(sq));
  result.per_row.resize(rows);
  double sum = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    result.per_row[r] = std::sqrt(sq[r] * inv_d) / s;
    sum += result.per_row[r];
  }
  ddm::require_finite_rows(where, "Delta_refine", result.per_row, coarse.back());
  result.mean = sum / static_cast<double>(rows);
  return result;
}

/// Delta_r between `coarse` and refine(coarse).
template <class Field, class T, class Space, class Integrator>
[[nodiscard]] refinement_result step_refinement(const execution_context<Space>& ctx, Field&& field,
                                                batch_view<const T, Space> noise, const time_schedule& coarse,
                                                const Integrator& integ, refinement_options options = {}) {
  return step_refinement(ctx, field, noise, coarse, refine(coarse), integ, options);
}

}  // namespace ddm::diagnostics
