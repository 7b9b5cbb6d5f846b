#pragma once
// The Frechet distance of samples to the analytic DDM's true data, and every quality measure in
// one report. Needs Eigen (a symmetric eigensolver): link ddm::eigen, which CMake provides when
// Eigen3 is found.
//
//   FD = |m_hat - m|^2 + Tr(C_hat + C - 2 (C_hat^{1/2} C C_hat^{1/2})^{1/2})
// with m, C the mixture's exact mean and covariance (no sample of the truth is involved) and
// m_hat, C_hat the samples' mean and covariance (n - 1 normalization). Square roots of the
// symmetric positive semi-definite matrices come from eigendecompositions, with eigenvalues that
// rounding makes slightly negative clamped to 0.

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <span>

#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/synthetic/analytic_ddm.hpp"
#include "ddm/synthetic/measures.hpp"

namespace ddm::synthetic {

/// The Frechet (2-Wasserstein) distance between N(mean1, cov1) and N(mean2, cov2), squared as in
/// FID: |m1 - m2|^2 + Tr(C1 + C2 - 2 (C1^{1/2} C2 C1^{1/2})^{1/2}). Covariances are (D, D),
/// symmetric positive semi-definite.
[[nodiscard]] inline double frechet_distance(std::span<const double> mean1, batch_view<const double> cov1,
                                             std::span<const double> mean2, batch_view<const double> cov2) {
  constexpr const char* where = "ddm::synthetic::frechet_distance";
  const auto d = static_cast<index_t>(mean1.size());
  if (d == 0) throw empty_batch_error(ddm::concat(where, ": argument 'mean1' is empty, expected D >= 1 values"));
  if (static_cast<index_t>(mean2.size()) != d)
    throw shape_error(ddm::concat(where, ": argument 'mean2' has ", mean2.size(), " values, expected ", d));
  ddm::require_shape(where, "cov1", cov1, d, d);
  ddm::require_shape(where, "cov2", cov2, d, d);
  using matrix = Eigen::MatrixXd;
  matrix c1(d, d);
  matrix c2(d, d);
  for (index_t a = 0; a < d; ++a)
    for (index_t b = 0; b < d; ++b) {
      c1(a, b) = 0.5 * (cov1(a, b) + cov1(b, a));
      c2(a, b) = 0.5 * (cov2(a, b) + cov2(b, a));
    }
  if (!c1.allFinite() || !c2.allFinite())
    throw non_finite_error(ddm::concat(where, ": a covariance contains a NaN or infinity"));
  const Eigen::SelfAdjointEigenSolver<matrix> e1(c1);
  const Eigen::VectorXd root1 = e1.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  const matrix s1 = e1.eigenvectors() * root1.asDiagonal() * e1.eigenvectors().transpose();
  matrix inner = s1 * c2 * s1;
  inner = 0.5 * (inner + inner.transpose()).eval();
  const Eigen::SelfAdjointEigenSolver<matrix> e2(inner, Eigen::EigenvaluesOnly);
  const double trace_root = e2.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
  double dm2 = 0.0;
  for (index_t c = 0; c < d; ++c) {
    const double diff = mean1[static_cast<std::size_t>(c)] - mean2[static_cast<std::size_t>(c)];
    dm2 += diff * diff;
  }
  return std::max(0.0, dm2 + c1.trace() + c2.trace() - 2.0 * trace_root);
}

/// The Frechet distance of `samples` (n >= 2 rows) to the true data of `ddm`, whose mean and
/// covariance are exact.
template <class T>
[[nodiscard]] double frechet_distance(const analytic_ddm& model, batch_view<const T> samples) {
  detail::check_samples("ddm::synthetic::frechet_distance", model, samples, 2);
  const moments m = sample_moments(samples);
  return frechet_distance(std::span<const double>(m.mean), batch_view<const double>(m.covariance.data(), m.dim, m.dim),
                          model.mean(), model.covariance());
}

/// Every exact measure of a set of samples.
struct quality_report {
  double frechet = 0.0;   ///< Frechet distance to the true data
  double nll = 0.0;       ///< mean negative log-likelihood under the true density (nats per sample)
  mode_report modes;      ///< precision, coverage and cluster balance
};

template <class T>
[[nodiscard]] quality_report evaluate_quality(const analytic_ddm& model, batch_view<const T> samples,
                                              const mode_options& options = {}) {
  return {frechet_distance(model, samples), mean_nll(model, samples), mode_statistics(model, samples, options)};
}

template <non_const_view_batch X>
[[nodiscard]] double frechet_distance(const analytic_ddm& model, const X& samples) {
  return frechet_distance(model, cview(samples));
}
template <non_const_view_batch X>
[[nodiscard]] quality_report evaluate_quality(const analytic_ddm& model, const X& samples, const mode_options& options = {}) {
  return evaluate_quality(model, cview(samples), options);
}

}  // namespace ddm::synthetic
