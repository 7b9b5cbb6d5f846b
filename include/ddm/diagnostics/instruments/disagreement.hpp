#pragma once
// Expert disagreement: how far apart the K experts' velocities are at the current state.
//
//     d_r = 2 / (K (K - 1)) * sum_{k < l} ||v_k(x_r, t) - v_l(x_r, t)||_2
//
// the mean pairwise Euclidean distance among the experts' velocities of row r (K >= 2), and its
// trajectory integral over a sampling run,
//
//     I_r = sum_i |t_{i+1} - t_i| d_r(x_i, t_i)
//
// accumulated by integrated_disagreement. The study sorts samples into quartiles by I_r and
// finds a monotonic rise of LPIPS from the lowest to the highest quartile (bin_by_score).
//
// Cost: the K expert velocities (K field evaluations of the experts on the whole batch: the
// diagnostic evaluates every expert, whatever the policy selected) and O(K^2 D) per row.

#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/parallel.hpp"
#include "ddm/diagnostics/instruments/expert_views.hpp"
#include "ddm/core/row_ops.hpp"

namespace ddm::diagnostics {

/// Mean pairwise Euclidean distance among the K rows v[0..K), each of D values (K >= 2).
template <class T>
DDM_HOST_DEVICE double mean_pairwise_distance(const T* const* v, int k, index_t d) noexcept {
  double sum = 0.0;
  for (int a = 0; a < k; ++a)
    for (int b = a + 1; b < k; ++b) {
      double s = 0.0;
      for (index_t j = 0; j < d; ++j) {
        const double diff = static_cast<double>(v[a][j]) - static_cast<double>(v[b][j]);
        s += diff * diff;
      }
      sum += std::sqrt(s);
    }
  return 2.0 * sum / (static_cast<double>(k) * static_cast<double>(k - 1));
}

/// d_r for every row: the experts' velocities at one state, one (B, D) view per expert.
/// Rows are split over ctx.threads; each row is computed by one thread as one thread computes it,
/// so the result has the same bits for any thread count.
template <class T>
[[nodiscard]] std::vector<double> expert_disagreement(const host_context& ctx,
                                                      std::span<const batch_view<const T>> experts) {
  const char* where = "ddm::diagnostics::expert_disagreement";
  detail::check_expert_views(where, experts, 2);
  const index_t rows = experts[0].rows();
  const auto k = experts.size();
  std::vector<double> d(static_cast<std::size_t>(rows));
  // One row of expert pointers per part, allocated here: nothing allocates inside the parallel loop.
  const int parts = row_parts(ctx, rows, static_cast<index_t>(k * k) * experts[0].cols());
  std::vector<const T*> ptr(static_cast<std::size_t>(parts) * k);
  for_row_parts(parts, rows, [&](const row_range& range) {
    const T** p = ptr.data() + static_cast<std::size_t>(range.part) * k;
    for (index_t r = range.begin; r < range.end; ++r) {
      for (std::size_t e = 0; e < k; ++e) p[e] = experts[e].row(r);
      d[static_cast<std::size_t>(r)] = mean_pairwise_distance(p, static_cast<int>(k), experts[0].cols());
    }
  });
  ddm::require_finite_rows(where, "the expert disagreement", d, 0.0);
  return d;
}

/// The same on device views: Gram matrices through cuBLAS. Defined in
/// ddm/cuda/diagnostics/instruments/disagreement.hpp; declared here so that code written once for
/// every memory space (the stacked form below, the routing observer) finds it by its name.
template <class T>
[[nodiscard]] std::vector<double> expert_disagreement(const execution_context<cuda_space>& ctx,
                                                      std::span<const batch_view<const T, cuda_space>> experts);

/// d_r from a stacked (K * B, D) batch (expert k in rows [k B, (k + 1) B)), in any memory space.
template <class T, class Space>
[[nodiscard]] std::vector<double> expert_disagreement(const execution_context<Space>& ctx,
                                                      batch_view<const T, Space> stacked, index_t experts) {
  const auto views = split_stacked(stacked, experts);
  return expert_disagreement(ctx, std::span<const batch_view<const T, Space>>(views));
}

/// I_r = sum over steps of |dt| d_r, accumulated one step at a time.
class integrated_disagreement {
 public:
  /// Adds |t_next - t| d for the step from t to t_next.
  void add(double t, double t_next, std::span<const double> d) {
    const char* where = "ddm::diagnostics::integrated_disagreement::add";
    if (total_.empty()) total_.assign(d.size(), 0.0);
    if (d.size() != total_.size())
      throw shape_error(ddm::concat(where, ": argument 'd' has ", d.size(), " values, expected ", total_.size(),
                                            " (one per row, as in the first step)"));
    if (!std::isfinite(t) || !std::isfinite(t_next))
      throw argument_error(ddm::concat(where, ": step from t = ", t, " to t_next = ", t_next, ", expected finite times"));
    // Checked before anything is added: a NaN would poison the row's integral for the whole run.
    for (std::size_t r = 0; r < d.size(); ++r)
      if (!std::isfinite(d[r]))
        throw non_finite_error(ddm::concat(where, ": argument 'd' has value ", d[r], " in row ", r, " at t = ",
                                                   t, ", expected finite distances"),
                               -1, t);
    const double dt = std::abs(t_next - t);
    for (std::size_t r = 0; r < d.size(); ++r) total_[r] += dt * d[r];
    ++steps_;
  }

  /// (B) I_r so far.
  [[nodiscard]] const std::vector<double>& total() const noexcept { return total_; }
  [[nodiscard]] std::size_t steps() const noexcept { return steps_; }
  void reset() noexcept {
    total_.clear();
    steps_ = 0;
  }

 private:
  std::vector<double> total_;
  std::size_t steps_ = 0;
};

}  // namespace ddm::diagnostics
