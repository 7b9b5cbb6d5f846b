#pragma once
// Expert-data alignment: does the router pick the experts whose training clusters are nearest to
// where the sample is heading?
//
// At a state x at time t with the blended velocity v, the data prediction is x0_hat = x - t v;
// it is embedded as e_r = phi(x0_hat_r) (phi = identity by default; the study uses DINOv2, the
// embedding its clusters were built in), and the K cluster centroids c_k (K, E) the experts were
// trained on are ranked by distance from e_r:
//
//     rank_r(k) = 1 + #{ l : ||e_r - c_l|| < ||e_r - c_k|| } + #{ l < k : ||e_r - c_l|| = ||e_r - c_k|| }
//
// (1 = nearest; ties go to the lower expert index, as in the routing policies). For each row the
// ranks of its selected experts are averaged; pooled over every (row, selected expert) pair they
// give the mean rank of a policy. A router that always picks the nearest cluster has mean rank
// 1 under top-1 and 1.5 under top-2; a uniformly random pick has (K + 1) / 2. The study reports
// 1.54 (top-1) and 1.96 (top-2) on Paris at t in {0.3, 0.5, 0.7} [unverified].
//
// alignment_profile collects these per evaluated time, to look at alignment as a function of t
// (the hypothesis that alignment matters most late in sampling, at small t); nearest_steps()
// picks the sampler steps whose start times are nearest to requested times.
//
// Cost: no field evaluation (x0_hat reuses the blended velocity the sampler computed); one
// embedding of the batch and O(K E) per row.

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/parallel.hpp"
#include "ddm/diagnostics/instruments/expert_views.hpp"
#include "ddm/flow/parameterization.hpp"
#include "ddm/flow/schedule.hpp"

namespace ddm::diagnostics {

/// phi(x) = x.
struct identity_embedding {
  [[nodiscard]] index_t dim(index_t input_dim) const noexcept { return input_dim; }
  template <class T, class Space>
  void operator()(const execution_context<Space>& ctx, batch_view<const T, Space> in, batch_view<T, Space> out) const {
    copy(ctx, out, in);
  }
};

/// E embeds (B, D) batches of T into (B, e.dim(D)) batches: e.dim(D) and e(ctx, in, out).
template <class E, class T, class Space = host_space>
concept embedding = requires(const E& e, const execution_context<Space>& ctx, batch_view<const T, Space> in,
                             batch_view<T, Space> out, index_t d) {
  { e.dim(d) } -> std::convertible_to<index_t>;
  e(ctx, in, out);
};

/// rank(k) of the `sel`-marked experts among K centroids by distance from `e` (E values);
/// writes every expert's squared distance into `dist` (K values of scratch). Returns the sum of
/// the selected experts' ranks and adds each selected rank to `histogram[rank - 1]` when given.
template <class T>
DDM_HOST_DEVICE double selected_rank_sum(const T* e, const T* centroids, index_t centroid_stride, int k, index_t dim,
                                         const std::uint8_t* sel, double* dist, std::size_t* histogram) noexcept {
  for (int c = 0; c < k; ++c) {
    const T* p = centroids + c * centroid_stride;
    double s = 0.0;
    for (index_t j = 0; j < dim; ++j) {
      const double diff = static_cast<double>(e[j]) - static_cast<double>(p[j]);
      s += diff * diff;
    }
    dist[c] = s;
  }
  double sum = 0.0;
  for (int c = 0; c < k; ++c) {
    if (sel[c] == 0) continue;
    int rank = 1;
    for (int l = 0; l < k; ++l)
      if (dist[l] < dist[c] || (dist[l] == dist[c] && l < c)) ++rank;
    sum += rank;
    if (histogram != nullptr) ++histogram[rank - 1];
  }
  return sum;
}

struct alignment_result {
  double t = 0.0;
  std::vector<double> mean_rank;            ///< (B) mean rank of the row's selected experts, NaN when none
  std::vector<std::uint32_t> selected_count;  ///< (B) selected experts of the row
  std::vector<std::size_t> rank_histogram;  ///< (K) selected (row, expert) pairs at rank 1 .. K
  std::size_t pairs = 0;                    ///< selected (row, expert) pairs in all
  std::size_t rows_without_selection = 0;   ///< rows with no selected expert (left out of the pool)

  /// Mean rank over every selected (row, expert) pair; empty when there is none.
  [[nodiscard]] std::optional<double> pooled_mean_rank() const {
    if (pairs == 0) return std::nullopt;
    double s = 0.0;
    for (std::size_t k = 0; k < rank_histogram.size(); ++k) s += static_cast<double>((k + 1) * rank_histogram[k]);
    return s / static_cast<double>(pairs);
  }
};

namespace detail {

// What selected_ranks checks of its shapes in every memory space.
template <class T, class Space>
void check_rank_shapes(const char* where, batch_view<const T, Space> embedded, batch_view<const T, Space> centroids) {
  ddm::require_non_empty(where, "embedded", embedded);
  ddm::require_non_empty(where, "centroids", centroids);
  if (centroids.cols() != embedded.cols())
    throw shape_error(ddm::concat(where, ": argument 'centroids' has ", centroids.cols(),
                                  " columns, expected the embedding dimension ", embedded.cols()));
}

// The result for B rows and K experts at t, before any row is ranked.
[[nodiscard]] inline alignment_result empty_alignment(std::size_t rows, std::size_t k, double t) {
  alignment_result out;
  out.t = t;
  out.mean_rank.assign(rows, std::numeric_limits<double>::quiet_NaN());
  out.selected_count.assign(rows, 0);
  out.rank_histogram.assign(k, 0);
  return out;
}

// Row r, whose n selected experts' ranks sum to `sum` (a row without any is counted apart, and
// left out of the pool).
inline void add_ranked_row(alignment_result& out, std::size_t r, std::uint32_t n, double sum) {
  out.selected_count[r] = n;
  if (n == 0) {
    ++out.rows_without_selection;
    return;
  }
  out.mean_rank[r] = sum / n;
  out.pairs += n;
}

}  // namespace detail

/// Ranks of the selected experts' centroids (K, E) by distance from already embedded states (B, E).
/// Rows are ranked with rows split over ctx.threads, each part counting into a histogram of its
/// own; the histograms (integers) are summed and the rows recorded in row order after, so the
/// result has the same bits for any thread count.
template <class T>
[[nodiscard]] alignment_result selected_ranks(const host_context& ctx, batch_view<const T> embedded,
                                              batch_view<const std::uint8_t> selected, batch_view<const T> centroids,
                                              double t = 0.0) {
  const char* where = "ddm::diagnostics::selected_ranks";
  detail::check_rank_shapes(where, embedded, centroids);
  const index_t rows = embedded.rows();
  const index_t k = centroids.rows();
  detail::check_selection(where, selected, rows, k);
  // A NaN distance compares false with every other one, so a NaN state would rank 1: refuse it.
  detail::require_finite_view(where, "embedded", -1, embedded);
  detail::require_finite_view(where, "centroids", -1, centroids);
  alignment_result out = detail::empty_alignment(static_cast<std::size_t>(rows), static_cast<std::size_t>(k), t);
  const auto uk = static_cast<std::size_t>(k);
  // Per part: K distances of scratch and a K-bin histogram; allocated here, not in the parallel loop.
  const int parts = row_parts(ctx, rows, k * embedded.cols());
  std::vector<double> dist(static_cast<std::size_t>(parts) * uk);
  std::vector<std::size_t> histograms(static_cast<std::size_t>(parts) * uk, 0);
  std::vector<double> sums(static_cast<std::size_t>(rows));
  std::vector<std::uint32_t> counts(static_cast<std::size_t>(rows));
  for_row_parts(parts, rows, [&](const row_range& range) {
    const std::size_t part = static_cast<std::size_t>(range.part) * uk;
    for (index_t r = range.begin; r < range.end; ++r) {
      std::uint32_t n = 0;
      for (index_t c = 0; c < k; ++c) n += selected(r, c);
      counts[static_cast<std::size_t>(r)] = n;
      sums[static_cast<std::size_t>(r)] =
          n == 0 ? 0.0
                 : selected_rank_sum(embedded.row(r), centroids.data(), centroids.stride(), static_cast<int>(k),
                                     embedded.cols(), selected.row(r), dist.data() + part,
                                     histograms.data() + part);
    }
  });
  for (std::size_t p = 0; p < static_cast<std::size_t>(parts); ++p)
    for (std::size_t c = 0; c < uk; ++c) out.rank_histogram[c] += histograms[p * uk + c];
  for (index_t r = 0; r < rows; ++r)
    detail::add_ranked_row(out, static_cast<std::size_t>(r), counts[static_cast<std::size_t>(r)],
                           sums[static_cast<std::size_t>(r)]);
  return out;
}

/// The same on device views: one thread per row. Defined in
/// ddm/cuda/diagnostics/instruments/alignment.hpp; declared here so that alignment_ranks, written
/// once for every memory space, finds it by its name.
template <class T>
[[nodiscard]] alignment_result selected_ranks(const execution_context<cuda_space>& ctx,
                                              batch_view<const T, cuda_space> embedded,
                                              batch_view<const std::uint8_t, cuda_space> selected,
                                              batch_view<const T, cuda_space> centroids, double t = 0.0);

namespace detail {

// phi(x0_hat) with x0_hat = x - t v, in x's memory space: what alignment_ranks ranks.
template <class T, class Space, class Embedding>
[[nodiscard]] batch<T, Space> embedded_data_prediction(const execution_context<Space>& ctx, const char* where,
                                                       batch_view<const T, Space> x, double t,
                                                       batch_view<const T, Space> v, const Embedding& phi) {
  ddm::require_non_empty(where, "x", x);
  ddm::require_same_shape(where, "v", v, x);
  if (!(t >= 0.0 && t <= 1.0)) ddm::fail_argument(where, "t", t, "a time in [0, 1]");
  batch<T, Space> x0(ctx, x.rows(), x.cols());
  flow::x0_hat(ctx, x, v, t, x0.view());
  const index_t e_dim = phi.dim(x.cols());
  if (e_dim < 1) ddm::fail_argument(where, "phi.dim(D)", e_dim, ">= 1");
  batch<T, Space> embedded(ctx, x.rows(), e_dim);
  phi(ctx, x0.cview(), embedded.view());
  return embedded;
}

}  // namespace detail

/// Ranks of the selected experts at state x (B, D), time t, with blended velocity v (B, D):
/// x0_hat = x - t v, embedded by phi, against the centroids (K, phi.dim(D)); in any memory space.
template <class T, class Space, class Embedding = identity_embedding>
  requires embedding<Embedding, T, Space>
[[nodiscard]] alignment_result alignment_ranks(const execution_context<Space>& ctx, batch_view<const T, Space> x,
                                               double t, batch_view<const T, Space> v,
                                               batch_view<const std::uint8_t, Space> selected,
                                               batch_view<const T, Space> centroids, const Embedding& phi = {}) {
  const auto embedded = detail::embedded_data_prediction(ctx, "ddm::diagnostics::alignment_ranks", x, t, v, phi);
  return selected_ranks(ctx, embedded.cview(), selected, centroids, t);
}

/// Alignment as a function of t: one record per evaluated time, in the order added.
class alignment_profile {
 public:
  struct record {
    double t = 0.0;
    std::optional<double> mean_rank;  ///< pooled over the call's selected pairs
    std::size_t pairs = 0;
    std::vector<std::size_t> rank_histogram;
  };

  void add(const alignment_result& r) {
    records_.push_back({r.t, r.pooled_mean_rank(), r.pairs, r.rank_histogram});
  }

  [[nodiscard]] const std::vector<record>& records() const noexcept { return records_; }

  /// Mean rank pooled over the records with t_lo <= t <= t_hi (e.g. late sampling: [0, 0.5]).
  [[nodiscard]] std::optional<double> pooled_mean_rank(double t_lo, double t_hi) const {
    double s = 0.0;
    std::size_t n = 0;
    for (const auto& rec : records_)
      if (rec.t >= t_lo && rec.t <= t_hi && rec.mean_rank) {
        s += *rec.mean_rank * static_cast<double>(rec.pairs);
        n += rec.pairs;
      }
    return n > 0 ? std::optional<double>(s / static_cast<double>(n)) : std::nullopt;
  }

  void clear() noexcept { records_.clear(); }

 private:
  std::vector<record> records_;
};

/// The study's evaluation times.
inline constexpr double default_alignment_times[] = {0.3, 0.5, 0.7};

/// For each requested time, the step i of `s` whose start time t_i is nearest (ties: the earlier
/// step). Steps start at t_0 .. t_{N-1}; the final time is no step's start.
[[nodiscard]] inline std::vector<std::size_t> nearest_steps(const time_schedule& s,
                                                            std::span<const double> times = default_alignment_times) {
  std::vector<std::size_t> out;
  out.reserve(times.size());
  for (double q : times) {
    if (!(q >= 0.0 && q <= 1.0)) ddm::fail_argument("ddm::diagnostics::nearest_steps", "times", q, "times in [0, 1]");
    std::size_t best = 0;
    for (std::size_t i = 1; i < s.steps(); ++i)
      if (std::abs(s[i] - q) < std::abs(s[best] - q)) best = i;
    out.push_back(best);
  }
  return out;
}

}  // namespace ddm::diagnostics
