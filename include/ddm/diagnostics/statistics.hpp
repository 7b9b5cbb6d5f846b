#pragma once
// Statistics over per-row (or per-step) diagnostic values, on the host, deterministic under a
// seed.
//
// - quantile(v, p): Hyndman & Fan type 7 (R's and NumPy's default): with v sorted ascending and
//   h = (n - 1) p, Q(p) = v[floor h] + (h - floor h) (v[floor h + 1] - v[floor h]).
//   median = Q(0.5), iqr = Q(0.75) - Q(0.25).
// - bin_by_score(score, quality, k): rows sorted by score (ties in row order) and cut into k
//   groups of equal size (bin b holds sorted positions [floor(b n / k), floor((b + 1) n / k))),
//   with each bin's count, score range and mean score and quality. k = 4 gives the quartiles.
// - average_ranks(v): 1-based ranks, tied values all get the mean of the positions they span.
// - spearman(x, y): Pearson's correlation of the average ranks.
// - spearman_test(x, y, options): rho with a two-sided permutation p-value
//   p = (1 + #{b : |rho_b| >= |rho|}) / (1 + P) over P random permutations of y (never 0, as a
//   p-value estimated from P permutations should be), and a percentile bootstrap interval
//   (pairs resampled with replacement, re-ranked, type-7 quantiles of the bootstrap rhos).
//   Permutation b uses Philox stream b, bootstrap resample b stream 2^40 + b, under `seed`.
//
// Every function rejects empty input, mismatched lengths and NaN or infinite values with a ddm
// error naming the argument.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <optional>
#include <span>
#include <vector>

#include "ddm/core/error.hpp"
#include "ddm/core/rng.hpp"

namespace ddm::diagnostics {

namespace detail {

inline void check_values(const char* where, const char* name, std::span<const double> v) {
  if (v.empty())
    throw empty_batch_error(ddm::concat(where, ": argument '", name, "' is empty, expected at least one value"));
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      throw non_finite_error(ddm::concat(where, ": argument '", name, "' has value ", v[i], " at index ", i,
                                                 ", expected finite values"));
}

inline void check_pair(const char* where, std::span<const double> x, std::span<const double> y, const char* xn,
                       const char* yn) {
  check_values(where, xn, x);
  check_values(where, yn, y);
  if (x.size() != y.size())
    throw shape_error(ddm::concat(where, ": argument '", yn, "' has ", y.size(), " values, expected as many as '",
                                          xn, "' (", x.size(), ")"));
}

inline void check_probability(const char* where, const char* name, double p) {
  if (!(p >= 0.0 && p <= 1.0)) ddm::fail_argument(where, name, p, "a value in [0, 1]");
}

// Type-7 quantile of values already sorted ascending.
inline double quantile_sorted(std::span<const double> sorted, double p) {
  const double h = static_cast<double>(sorted.size() - 1) * p;
  const auto lo = static_cast<std::size_t>(std::floor(h));
  if (lo + 1 >= sorted.size()) return sorted.back();
  return sorted[lo] + (h - static_cast<double>(lo)) * (sorted[lo + 1] - sorted[lo]);
}

// Average ranks without validation (shared by the bootstrap's inner loop).
inline void average_ranks_into(std::span<const double> v, std::vector<std::size_t>& order, std::vector<double>& ranks) {
  const std::size_t n = v.size();
  order.resize(n);
  ranks.resize(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && v[order[j]] == v[order[i]]) ++j;
    const double rank = 0.5 * static_cast<double>(i + 1 + j);  // mean of positions i+1 .. j
    for (std::size_t k = i; k < j; ++k) ranks[order[k]] = rank;
    i = j;
  }
}

// Pearson correlation; nullopt when either side has no spread.
inline std::optional<double> pearson(std::span<const double> x, std::span<const double> y) {
  const auto n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (!(sxx > 0.0) || !(syy > 0.0)) return std::nullopt;
  return sxy / std::sqrt(sxx * syy);
}

}  // namespace detail

/// The type-7 quantile of `values` at probability p in [0, 1].
[[nodiscard]] inline double quantile(std::span<const double> values, double p) {
  const char* where = "ddm::diagnostics::quantile";
  detail::check_values(where, "values", values);
  detail::check_probability(where, "p", p);
  std::vector<double> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end());
  return detail::quantile_sorted(sorted, p);
}

/// Type-7 quantiles of `values` at each probability of `ps` (one sort).
[[nodiscard]] inline std::vector<double> quantiles(std::span<const double> values, std::span<const double> ps) {
  const char* where = "ddm::diagnostics::quantiles";
  detail::check_values(where, "values", values);
  for (double p : ps) detail::check_probability(where, "ps", p);
  std::vector<double> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<double> out;
  out.reserve(ps.size());
  for (double p : ps) out.push_back(detail::quantile_sorted(sorted, p));
  return out;
}

[[nodiscard]] inline double median(std::span<const double> values) { return quantile(values, 0.5); }

/// Interquartile range Q(0.75) - Q(0.25) (type 7).
[[nodiscard]] inline double iqr(std::span<const double> values) {
  const double ps[] = {0.25, 0.75};
  const auto q = quantiles(values, ps);
  return q[1] - q[0];
}

/// One group of rows of bin_by_score.
struct score_bin {
  std::size_t count = 0;
  double score_min = 0.0;
  double score_max = 0.0;
  double score_mean = 0.0;
  double quality_mean = 0.0;
};

/// Rows sorted by `score` and cut into `bins` equal-size groups (sizes differ by at most one),
/// with the mean of `quality` in each: bin 0 holds the lowest scores.
[[nodiscard]] inline std::vector<score_bin> bin_by_score(std::span<const double> score, std::span<const double> quality,
                                                         std::size_t bins = 4) {
  const char* where = "ddm::diagnostics::bin_by_score";
  detail::check_pair(where, score, quality, "score", "quality");
  if (bins < 1 || bins > score.size())
    throw argument_error(ddm::concat(where, ": argument 'bins' = ", bins, ", expected 1 <= bins <= ",
                                             score.size(), " (the number of rows)"));
  const std::size_t n = score.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return score[a] < score[b]; });
  std::vector<score_bin> out(bins);
  for (std::size_t b = 0; b < bins; ++b) {
    const std::size_t first = b * n / bins;
    const std::size_t last = (b + 1) * n / bins;
    score_bin& s = out[b];
    s.count = last - first;
    s.score_min = score[order[first]];
    s.score_max = score[order[last - 1]];
    double ss = 0, qs = 0;
    for (std::size_t k = first; k < last; ++k) {
      ss += score[order[k]];
      qs += quality[order[k]];
    }
    s.score_mean = ss / static_cast<double>(s.count);
    s.quality_mean = qs / static_cast<double>(s.count);
  }
  return out;
}

/// 1-based ranks; tied values share the mean of the positions they occupy.
[[nodiscard]] inline std::vector<double> average_ranks(std::span<const double> values) {
  detail::check_values("ddm::diagnostics::average_ranks", "values", values);
  std::vector<std::size_t> order;
  std::vector<double> ranks;
  detail::average_ranks_into(values, order, ranks);
  return ranks;
}

/// Spearman's rank correlation (Pearson on average ranks).
[[nodiscard]] inline double spearman(std::span<const double> x, std::span<const double> y) {
  const char* where = "ddm::diagnostics::spearman";
  detail::check_pair(where, x, y, "x", "y");
  std::vector<std::size_t> order;
  std::vector<double> rx, ry;
  detail::average_ranks_into(x, order, rx);
  detail::average_ranks_into(y, order, ry);
  const auto rho = detail::pearson(rx, ry);
  if (!rho)
    throw argument_error(ddm::concat(where, ": all values of '", detail::pearson(rx, rx) ? "y" : "x",
                                             "' are equal, expected at least two distinct values (the rank "
                                             "correlation is undefined otherwise)"));
  return *rho;
}

struct spearman_options {
  std::size_t permutations = 9999;  ///< 0: no p-value
  std::size_t bootstrap = 2000;     ///< 0: no interval
  double level = 0.95;              ///< coverage of the bootstrap interval, in (0, 1)
  std::uint64_t seed = 0;
};

struct spearman_result {
  double rho = 0.0;
  std::optional<double> p_value;     ///< two-sided permutation p-value, when permutations > 0
  std::size_t permutations = 0;
  std::optional<double> ci_low;      ///< percentile bootstrap interval, when some resample was usable
  std::optional<double> ci_high;
  double level = 0.0;
  std::size_t bootstrap_used = 0;        ///< resamples with spread in both x and y
  std::size_t bootstrap_degenerate = 0;  ///< resamples skipped: all x or all y equal
};

/// Spearman's rho with a permutation p-value and a bootstrap interval, deterministic in `seed`.
[[nodiscard]] inline spearman_result spearman_test(std::span<const double> x, std::span<const double> y,
                                                   spearman_options options = {}) {
  const char* where = "ddm::diagnostics::spearman_test";
  if (!(options.level > 0.0 && options.level < 1.0)) ddm::fail_argument(where, "level", options.level, "a value in (0, 1)");
  spearman_result out;
  out.rho = spearman(x, y);
  out.level = options.level;
  const std::size_t n = x.size();

  std::vector<std::size_t> order;
  std::vector<double> rx, ry;
  detail::average_ranks_into(x, order, rx);
  detail::average_ranks_into(y, order, ry);
  // Centered ranks: the permuted correlation is then a single dot product.
  const double mean_rank = 0.5 * static_cast<double>(n + 1);
  double sxx = 0, syy = 0;
  for (std::size_t i = 0; i < n; ++i) {
    rx[i] -= mean_rank;
    ry[i] -= mean_rank;
    sxx += rx[i] * rx[i];
    syy += ry[i] * ry[i];
  }
  const double norm = std::sqrt(sxx * syy);
  // Ties between |rho_b| and |rho| are exact in rank arithmetic up to rounding; count them.
  const double threshold = std::abs(out.rho) * (1.0 - 1e-12);
  if (options.permutations > 0) {
    std::vector<double> perm(ry);
    std::size_t extreme = 0;
    for (std::size_t b = 0; b < options.permutations; ++b) {
      perm = ry;
      for (std::size_t i = n - 1; i > 0; --i) {  // Fisher-Yates
        const double u = philox4x32::uniform(options.seed, b, i);
        const auto j = std::min(i, static_cast<std::size_t>(u * static_cast<double>(i + 1)));
        std::swap(perm[i], perm[j]);
      }
      double sxy = 0;
      for (std::size_t i = 0; i < n; ++i) sxy += rx[i] * perm[i];
      if (std::abs(sxy / norm) >= threshold) ++extreme;
    }
    out.permutations = options.permutations;
    out.p_value = static_cast<double>(1 + extreme) / static_cast<double>(1 + options.permutations);
  }
  if (options.bootstrap > 0) {
    std::vector<double> bx(n), by(n), brx, bry, rhos;
    rhos.reserve(options.bootstrap);
    constexpr std::uint64_t bootstrap_streams = std::uint64_t{1} << 40;
    for (std::size_t b = 0; b < options.bootstrap; ++b) {
      for (std::size_t i = 0; i < n; ++i) {
        const double u = philox4x32::uniform(options.seed, bootstrap_streams + b, i);
        const auto k = std::min(n - 1, static_cast<std::size_t>(u * static_cast<double>(n)));
        bx[i] = x[k];
        by[i] = y[k];
      }
      detail::average_ranks_into(bx, order, brx);
      detail::average_ranks_into(by, order, bry);
      if (const auto r = detail::pearson(brx, bry)) {
        rhos.push_back(*r);
      } else {
        ++out.bootstrap_degenerate;
      }
    }
    out.bootstrap_used = rhos.size();
    if (!rhos.empty()) {
      std::sort(rhos.begin(), rhos.end());
      out.ci_low = detail::quantile_sorted(rhos, 0.5 * (1.0 - options.level));
      out.ci_high = detail::quantile_sorted(rhos, 0.5 * (1.0 + options.level));
    }
  }
  return out;
}

}  // namespace ddm::diagnostics
