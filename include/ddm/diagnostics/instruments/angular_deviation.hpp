#pragma once
// Angular deviation of each expert's velocity from the blended velocity the sampler follows,
// averaged separately over the experts the policy selected and those it did not:
//
//     theta_rk  = angle(v_k(x_r, t), v(x_r, t))                      in [0, pi]
//     sel_r     = mean of theta_rk over k with selected(r, k) = 1
//     non_r     = mean of theta_rk over k with selected(r, k) = 0
//     gap_r     = (non_r - sel_r) / non_r
//
// The angle is computed as 2 atan2(||a/|a| - b/|b|||, ||a/|a| + b/|b|||) (Kahan), accurate
// near 0 and pi where acos of the cosine is not. gap > 0 means the selected experts point closer
// to where the sampler goes than the others do. The study reports the gap pooled over all steps
// and samples of a top-2 run: 29% on Paris (8 experts), 43% on a 10-expert MNIST DDM [its
// exact pooling is not published; unverified].
//
// Undefined cases are reported, never averaged in:
// - an expert whose velocity is 0 in row r, or a row whose blended velocity is 0, has no angle:
//   it is left out of its group (the counts say how many angles each mean holds);
// - a NaN or infinite velocity is not a zero one: it is a ddm::non_finite_error naming the view
//   and the row (before it could become an undefined angle or a NaN mean);
// - a group with no angle (every expert selected, as under the full ensemble, or none) has mean
//   NaN in that row, and the row's gap is NaN with defined = 0; so is a row with non_r = 0.
// angular_deviation_summary pools angles over rows and calls: its gap is
// (mean_non - mean_sel) / mean_non over every angle of each group, empty when a group is empty.
//
// Cost: the K expert velocities (every expert on the whole batch) and O(K D) per row.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/parallel.hpp"
#include "ddm/diagnostics/instruments/expert_views.hpp"

namespace ddm::diagnostics {

/// The angle in [0, pi] between a and b (D values each); -1 when either is the zero vector.
template <class T>
DDM_HOST_DEVICE double angle_between(const T* a, const T* b, index_t d) noexcept {
  double na = 0.0, nb = 0.0;
  for (index_t j = 0; j < d; ++j) {
    na += static_cast<double>(a[j]) * static_cast<double>(a[j]);
    nb += static_cast<double>(b[j]) * static_cast<double>(b[j]);
  }
  if (!(na > 0.0) || !(nb > 0.0)) return -1.0;
  na = 1.0 / std::sqrt(na);
  nb = 1.0 / std::sqrt(nb);
  double minus = 0.0, plus = 0.0;
  for (index_t j = 0; j < d; ++j) {
    const double ua = static_cast<double>(a[j]) * na;
    const double ub = static_cast<double>(b[j]) * nb;
    minus += (ua - ub) * (ua - ub);
    plus += (ua + ub) * (ua + ub);
  }
  return 2.0 * std::atan2(std::sqrt(minus), std::sqrt(plus));
}

struct angular_deviation_result {
  std::vector<double> selected_angle;        ///< (B) sel_r in radians, NaN when the group is empty
  std::vector<double> unselected_angle;      ///< (B) non_r in radians, NaN when the group is empty
  std::vector<double> relative_gap;          ///< (B) gap_r, NaN unless defined
  std::vector<std::uint8_t> defined;         ///< (B) 1 when gap_r is defined
  std::vector<std::uint32_t> selected_count;    ///< (B) angles averaged into sel_r
  std::vector<std::uint32_t> unselected_count;  ///< (B) angles averaged into non_r
  std::size_t undefined_angles = 0;          ///< expert angles left out (a zero velocity)
};

namespace detail {

// A result for `rows` rows with every mean undefined.
inline angular_deviation_result empty_angular_deviation(std::size_t rows) {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  angular_deviation_result out;
  out.selected_angle.assign(rows, nan);
  out.unselected_angle.assign(rows, nan);
  out.relative_gap.assign(rows, nan);
  out.defined.assign(rows, 0);
  out.selected_count.assign(rows, 0);
  out.unselected_count.assign(rows, 0);
  return out;
}

// Row r's K angles (theta < 0: undefined) grouped by its selection into `out`. Shared by the host
// and device versions, so that both average and define the same way.
inline void group_row_angles(const double* theta, const std::uint8_t* selected, index_t k, std::size_t r,
                             angular_deviation_result& out) {
  double sum_sel = 0.0, sum_non = 0.0;
  for (index_t e = 0; e < k; ++e) {
    if (theta[e] < 0.0) {
      ++out.undefined_angles;
      continue;
    }
    if (selected[e] != 0) {
      sum_sel += theta[e];
      ++out.selected_count[r];
    } else {
      sum_non += theta[e];
      ++out.unselected_count[r];
    }
  }
  if (out.selected_count[r] > 0) out.selected_angle[r] = sum_sel / out.selected_count[r];
  if (out.unselected_count[r] > 0) out.unselected_angle[r] = sum_non / out.unselected_count[r];
  if (out.selected_count[r] > 0 && out.unselected_count[r] > 0 && out.unselected_angle[r] > 0.0) {
    out.relative_gap[r] = (out.unselected_angle[r] - out.selected_angle[r]) / out.unselected_angle[r];
    out.defined[r] = 1;
  }
}

}  // namespace detail

/// theta for every row and expert, grouped by the (B, K) selection mask. The angles are computed
/// with rows split over ctx.threads (each by one thread, as one thread computes it) and grouped
/// in row order after, so the result has the same bits for any thread count.
template <class T>
[[nodiscard]] angular_deviation_result angular_deviation(const host_context& ctx,
                                                         std::span<const batch_view<const T>> experts,
                                                         batch_view<const T> blended,
                                                         batch_view<const std::uint8_t> selected) {
  const char* where = "ddm::diagnostics::angular_deviation";
  detail::check_expert_views(where, experts, 1);
  ddm::require_same_shape(where, "blended", blended, experts[0]);
  const index_t rows = blended.rows();
  const auto k_count = static_cast<index_t>(experts.size());
  detail::check_selection(where, selected, rows, k_count);
  for (std::size_t k = 0; k < experts.size(); ++k)
    detail::require_finite_view(where, "experts", static_cast<long>(k), experts[k]);
  detail::require_finite_view(where, "blended", -1, blended);
  angular_deviation_result out = detail::empty_angular_deviation(static_cast<std::size_t>(rows));
  std::vector<double> theta(static_cast<std::size_t>(rows * k_count));  // (B, K)
  for_row_ranges(ctx, rows, 4 * k_count * blended.cols(), [&](const row_range& range) {
    for (index_t r = range.begin; r < range.end; ++r)
      for (index_t k = 0; k < k_count; ++k)
        theta[static_cast<std::size_t>(r * k_count + k)] =
            angle_between(experts[static_cast<std::size_t>(k)].row(r), blended.row(r), blended.cols());
  });
  // Grouping counts the undefined angles of all rows: in row order, on this thread.
  for (index_t r = 0; r < rows; ++r)
    detail::group_row_angles(theta.data() + r * k_count, selected.row(r), k_count, static_cast<std::size_t>(r), out);
  return out;
}

/// The same on device views: one warp per angle. Defined in
/// ddm/cuda/diagnostics/instruments/angular_deviation.hpp; declared here so that code written once
/// for every memory space (the stacked form below, the routing observer) finds it by its name.
template <class T>
[[nodiscard]] angular_deviation_result angular_deviation(const execution_context<cuda_space>& ctx,
                                                         std::span<const batch_view<const T, cuda_space>> experts,
                                                         batch_view<const T, cuda_space> blended,
                                                         batch_view<const std::uint8_t, cuda_space> selected);

/// The same from a stacked (K * B, D) batch of expert velocities, in any memory space.
template <class T, class Space>
[[nodiscard]] angular_deviation_result angular_deviation(const execution_context<Space>& ctx,
                                                         batch_view<const T, Space> stacked, index_t experts,
                                                         batch_view<const T, Space> blended,
                                                         batch_view<const std::uint8_t, Space> selected) {
  const auto views = split_stacked(stacked, experts);
  return angular_deviation(ctx, std::span<const batch_view<const T, Space>>(views), blended, selected);
}

/// Angles pooled over rows and calls (steps): the study's relative gap of a whole run.
class angular_deviation_summary {
 public:
  void add(const angular_deviation_result& r) {
    for (std::size_t i = 0; i < r.selected_angle.size(); ++i) {
      if (r.selected_count[i] > 0) {
        sum_sel_ += r.selected_angle[i] * r.selected_count[i];
        n_sel_ += r.selected_count[i];
      }
      if (r.unselected_count[i] > 0) {
        sum_non_ += r.unselected_angle[i] * r.unselected_count[i];
        n_non_ += r.unselected_count[i];
      }
    }
    undefined_ += r.undefined_angles;
  }

  /// Mean angle of every selected expert seen (radians); empty when none.
  [[nodiscard]] std::optional<double> selected_mean() const {
    return n_sel_ > 0 ? std::optional<double>(sum_sel_ / static_cast<double>(n_sel_)) : std::nullopt;
  }
  [[nodiscard]] std::optional<double> unselected_mean() const {
    return n_non_ > 0 ? std::optional<double>(sum_non_ / static_cast<double>(n_non_)) : std::nullopt;
  }
  /// (mean_non - mean_sel) / mean_non; empty when either group is empty or mean_non = 0.
  [[nodiscard]] std::optional<double> relative_gap() const {
    const auto s = selected_mean();
    const auto n = unselected_mean();
    if (!s || !n || !(*n > 0.0)) return std::nullopt;
    return (*n - *s) / *n;
  }
  [[nodiscard]] std::size_t selected_angles() const noexcept { return n_sel_; }
  [[nodiscard]] std::size_t unselected_angles() const noexcept { return n_non_; }
  [[nodiscard]] std::size_t undefined_angles() const noexcept { return undefined_; }

 private:
  double sum_sel_ = 0.0;
  double sum_non_ = 0.0;
  std::size_t n_sel_ = 0;
  std::size_t n_non_ = 0;
  std::size_t undefined_ = 0;
};

}  // namespace ddm::diagnostics
