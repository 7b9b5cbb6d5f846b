#pragma once
// Exact quality measures of a set of samples against the analytic DDM's true data (those that
// need no linear-algebra library; the Frechet distance is in ddm/synthetic/quality.hpp).
//
//   sample_moments     sample mean and covariance (normalized by n - 1), accumulated in double
//   mean_nll           -(1/n) sum_i log p(x_i) under the true density (nats per sample; log-sum-exp)
//   mode_statistics    with d_j(x)^2 = |x - mu_j|^2 / s_j^2 (squared Mahalanobis distance to
//                      component j) and the radius r^2 = chi^2_D quantile q (default q = 0.99):
//                        precision  share of samples with min_j d_j^2 <= r^2
//                        coverage   share of components credited with >= min_hits samples (a
//                                   precise sample credits its nearest component)
//                      The radius is the one inside which a true sample of a component falls with
//                      probability q, so true data has precision >= q, whatever D and the scales.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <vector>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/synthetic/analytic_ddm.hpp"
#include "ddm/synthetic/gaussian_mixture.hpp"

namespace ddm::synthetic {

namespace detail {
template <class T>
void check_samples(const char* where, const analytic_ddm& model, batch_view<const T> x, index_t min_rows) {
  if (x.cols() != model.dim())
    throw shape_error(ddm::concat(where, ": argument 'samples' has ", x.cols(), " columns, expected D = ", model.dim()));
  if (x.rows() < min_rows)
    throw empty_batch_error(ddm::concat(where, ": argument 'samples' has ", x.rows(), " rows, expected >= ", min_rows));
  if (!all_finite(host_context{}, x))
    throw non_finite_error(ddm::concat(where, ": argument 'samples' contains a NaN or infinity"));
}
}  // namespace detail

/// Sample mean (D) and covariance (D, D), normalized by n - 1.
struct moments {
  index_t dim = 0;
  std::vector<double> mean;
  std::vector<double> covariance;
};

/// Mean and unbiased covariance of the rows of x (n >= 2), accumulated in double.
template <class T>
[[nodiscard]] moments sample_moments(batch_view<const T> x) {
  if (x.rows() < 2)
    throw empty_batch_error(ddm::concat("ddm::synthetic::sample_moments: argument 'x' has ", x.rows(),
                                                " rows, expected >= 2"));
  const auto d = static_cast<std::size_t>(x.cols());
  moments m{x.cols(), std::vector<double>(d, 0.0), std::vector<double>(d * d, 0.0)};
  for (index_t r = 0; r < x.rows(); ++r)
    for (std::size_t c = 0; c < d; ++c) m.mean[c] += static_cast<double>(x(r, static_cast<index_t>(c)));
  for (auto& v : m.mean) v /= static_cast<double>(x.rows());
  std::vector<double> centred(d);
  for (index_t r = 0; r < x.rows(); ++r) {
    for (std::size_t c = 0; c < d; ++c) centred[c] = static_cast<double>(x(r, static_cast<index_t>(c))) - m.mean[c];
    for (std::size_t a = 0; a < d; ++a)
      for (std::size_t b = a; b < d; ++b) m.covariance[a * d + b] += centred[a] * centred[b];
  }
  const double inv = 1.0 / static_cast<double>(x.rows() - 1);
  for (std::size_t a = 0; a < d; ++a)
    for (std::size_t b = a; b < d; ++b) {
      m.covariance[a * d + b] *= inv;
      m.covariance[b * d + a] = m.covariance[a * d + b];
    }
  return m;
}

/// -(1/n) sum_i log p(x_i): the mean negative log-likelihood under the true data density, in nats
/// per sample.
template <class T>
[[nodiscard]] double mean_nll(const analytic_ddm& model, batch_view<const T> samples) {
  detail::check_samples("ddm::synthetic::mean_nll", model, samples, 1);
  std::vector<double> scratch(model.num_components());
  const mixture_view m = model.view();
  double sum = 0.0;
  for (index_t r = 0; r < samples.rows(); ++r) sum -= mixture_log_density_row(m, samples.row(r), scratch.data());
  return sum / static_cast<double>(samples.rows());
}

/// The regularized lower incomplete gamma function P(a, x) = gamma(a, x) / Gamma(a), a > 0,
/// x >= 0: a power series below x = a + 1, a continued fraction for Q = 1 - P above.
[[nodiscard]] inline double regularized_gamma_p(double a, double x) {
  if (!(a > 0.0)) ddm::fail_argument("ddm::synthetic::regularized_gamma_p", "a", a, "> 0");
  if (!(x >= 0.0)) ddm::fail_argument("ddm::synthetic::regularized_gamma_p", "x", x, ">= 0");
  if (x == 0.0) return 0.0;
  const double log_prefactor = a * std::log(x) - x - std::lgamma(a);
  constexpr double eps = 1e-16;
  if (x < a + 1.0) {
    double term = 1.0 / a;
    double sum = term;
    for (int n = 1; n < 1000 && std::abs(term) > eps * std::abs(sum); ++n) {
      term *= x / (a + n);
      sum += term;
    }
    return std::min(1.0, sum * std::exp(log_prefactor));
  }
  // Q(a, x) = e^{-x} x^a / Gamma(a) * 1 / (x + 1 - a - 1 (1 - a) / (x + 3 - a - ...)), modified Lentz.
  constexpr double tiny = 1e-300;
  double b = x + 1.0 - a;
  double c = 1.0 / tiny;
  double d = 1.0 / b;
  double h = d;
  for (int i = 1; i < 1000; ++i) {
    const double an = -i * (i - a);
    b += 2.0;
    d = an * d + b;
    if (std::abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    const double delta = d * c;
    h *= delta;
    if (std::abs(delta - 1.0) < eps) break;
  }
  return std::max(0.0, 1.0 - std::exp(log_prefactor) * h);
}

/// P(X <= x) for X ~ chi^2 with `dof` degrees of freedom.
[[nodiscard]] inline double chi_squared_cdf(double dof, double x) { return regularized_gamma_p(0.5 * dof, 0.5 * x); }

/// The q-quantile of chi^2 with `dof` degrees of freedom, 0 < q < 1 (bisection on the cdf).
[[nodiscard]] inline double chi_squared_quantile(double dof, double q) {
  if (!(dof > 0.0)) ddm::fail_argument("ddm::synthetic::chi_squared_quantile", "dof", dof, "> 0");
  if (!(q > 0.0 && q < 1.0)) ddm::fail_argument("ddm::synthetic::chi_squared_quantile", "q", q, "a value in (0, 1)");
  double lo = 0.0;
  double hi = std::max(1.0, dof);
  while (chi_squared_cdf(dof, hi) < q) hi *= 2.0;
  for (int i = 0; i < 200 && hi - lo > 1e-14 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (chi_squared_cdf(dof, mid) < q ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

struct mode_options {
  /// A sample is within a component when its squared Mahalanobis distance is at most the
  /// chi^2_D quantile `quantile`: the radius holding that share of the component's own data.
  double quantile = 0.99;
  /// A component counts as covered when at least this many samples credit it.
  std::size_t min_hits = 1;
};

struct mode_report {
  double precision = 0.0;         ///< share of samples within the radius of some component
  double coverage = 0.0;          ///< share of components credited with >= min_hits samples
  double cluster_coverage = 0.0;  ///< share of clusters whose components got >= min_hits samples together
  double radius = 0.0;            ///< the Mahalanobis radius r (r^2 = chi^2_D quantile)
  /// Total variation distance between the clusters of the samples (each sample's nearest
  /// component, precise or not) and the cluster priors: 0 when every cluster gets its share.
  double cluster_tv_distance = 0.0;
  std::vector<std::size_t> component_hits;  ///< (J) precise samples credited to each component
  std::vector<double> cluster_share;        ///< (K) share of samples nearest to each cluster
};

/// Precision and mode coverage of `samples` (see the top of this header).
template <class T>
[[nodiscard]] mode_report mode_statistics(const analytic_ddm& model, batch_view<const T> samples,
                                          const mode_options& options = {}) {
  constexpr const char* where = "ddm::synthetic::mode_statistics";
  detail::check_samples(where, model, samples, 1);
  if (!(options.quantile > 0.0 && options.quantile < 1.0))
    ddm::fail_argument(where, "options.quantile", options.quantile, "a value in (0, 1)");
  if (options.min_hits < 1) ddm::fail_argument(where, "options.min_hits", options.min_hits, ">= 1");
  const auto d = static_cast<std::size_t>(model.dim());
  const std::size_t j_count = model.num_components();
  const std::size_t k_count = model.num_clusters();
  const double r2 = chi_squared_quantile(static_cast<double>(d), options.quantile);
  const auto means = model.component_means();
  const auto scales = model.component_scales();
  const auto cluster = model.component_cluster();

  mode_report rep;
  rep.radius = std::sqrt(r2);
  rep.component_hits.assign(j_count, 0);
  rep.cluster_share.assign(k_count, 0.0);
  std::size_t precise = 0;
  for (index_t r = 0; r < samples.rows(); ++r) {
    std::size_t best = 0;
    double best_d2 = std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < j_count; ++j) {
      double d2 = 0.0;
      for (std::size_t c = 0; c < d; ++c) {
        const double diff = static_cast<double>(samples(r, static_cast<index_t>(c))) - means(static_cast<index_t>(j), static_cast<index_t>(c));
        d2 += diff * diff;
      }
      d2 /= scales[j] * scales[j];
      if (d2 < best_d2) {
        best_d2 = d2;
        best = j;
      }
    }
    rep.cluster_share[static_cast<std::size_t>(cluster[best])] += 1.0;
    if (best_d2 <= r2) {
      ++precise;
      ++rep.component_hits[best];
    }
  }
  const auto n = static_cast<double>(samples.rows());
  rep.precision = static_cast<double>(precise) / n;
  std::size_t covered = 0;
  std::vector<std::size_t> cluster_hits(k_count, 0);
  for (std::size_t j = 0; j < j_count; ++j) {
    if (rep.component_hits[j] >= options.min_hits) ++covered;
    cluster_hits[static_cast<std::size_t>(cluster[j])] += rep.component_hits[j];
  }
  rep.coverage = static_cast<double>(covered) / static_cast<double>(j_count);
  std::size_t clusters_covered = 0;
  for (auto h : cluster_hits)
    if (h >= options.min_hits) ++clusters_covered;
  rep.cluster_coverage = static_cast<double>(clusters_covered) / static_cast<double>(k_count);
  const auto priors = model.cluster_priors();
  for (std::size_t k = 0; k < k_count; ++k) {
    rep.cluster_share[k] /= n;
    rep.cluster_tv_distance += 0.5 * std::abs(rep.cluster_share[k] - priors[k]);
  }
  return rep;
}

/// Share of the components that `samples` hit (see mode_statistics).
template <class T>
[[nodiscard]] double mode_coverage(const analytic_ddm& model, batch_view<const T> samples, const mode_options& options = {}) {
  return mode_statistics(model, samples, options).coverage;
}

/// Share of `samples` within the Mahalanobis radius of some component (see mode_statistics).
template <class T>
[[nodiscard]] double precision(const analytic_ddm& model, batch_view<const T> samples, const mode_options& options = {}) {
  return mode_statistics(model, samples, options).precision;
}

/// Overloads for batches and mutable views: the measures read their input through a const view.
template <class X>
concept non_const_view_batch = batch_like<X> && !std::is_same_v<std::remove_cvref_t<X>, const_view_t<X>>;

template <non_const_view_batch X>
[[nodiscard]] moments sample_moments(const X& x) {
  return sample_moments(cview(x));
}
template <non_const_view_batch X>
[[nodiscard]] double mean_nll(const analytic_ddm& model, const X& samples) {
  return mean_nll(model, cview(samples));
}
template <non_const_view_batch X>
[[nodiscard]] mode_report mode_statistics(const analytic_ddm& model, const X& samples, const mode_options& options = {}) {
  return mode_statistics(model, cview(samples), options);
}
template <non_const_view_batch X>
[[nodiscard]] double mode_coverage(const analytic_ddm& model, const X& samples, const mode_options& options = {}) {
  return mode_statistics(model, cview(samples), options).coverage;
}
template <non_const_view_batch X>
[[nodiscard]] double precision(const analytic_ddm& model, const X& samples, const mode_options& options = {}) {
  return mode_statistics(model, cview(samples), options).precision;
}

}  // namespace ddm::synthetic
