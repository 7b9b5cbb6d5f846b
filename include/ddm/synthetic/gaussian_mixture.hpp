#pragma once
// Closed-form rectified flow of a mixture of isotropic Gaussians: the per-row math of the
// analytic DDM, as free functions over raw pointers so that host loops and device kernels share it.
//
// Data x0 ~ sum_j w_j N(mu_j, s_j^2 I) in D dimensions; x_t = (1 - t) x0 + t eps.
//   sigma_j(t)^2 = (1 - t)^2 s_j^2 + t^2
//   log r_j(x)   = log w_j - |x - (1 - t) mu_j|^2 / (2 sigma_j^2) - (D / 2) log sigma_j^2 + const
//   v_j(x, t)    = a_j x - b_j mu_j,  a_j = (t - (1 - t) s_j^2) / sigma_j^2,  b_j = t / sigma_j^2
//   v(x, t)      = sum_j r_j(x) v_j(x, t)
// v_j is the division-free form of (x - E[x0 | x_t = x, j]) / t: it is exact and finite on all of
// [0, 1] when s_j > 0 (v = x - mu_j at t = 1, v = -x at t = 0).
//
// The Jacobian J = dv/dx is (sum_j r_j a_j) I + sum_j v_j (grad r_j)^T with
// grad r_j = r_j (g_j - sum_l r_l g_l), g_j = -(x - (1 - t) mu_j) / sigma_j^2, so
//   J u = abar u + sum_j r_j (c_j - cbar) v_j,   c_j = <g_j, u>,  cbar = sum_j r_j c_j.

#include <cmath>
#include <limits>

#include "ddm/core/config.hpp"

namespace ddm::synthetic {

/// A mixture's parameters, by pointer (no ownership): usable by value in a device kernel.
struct mixture_view {
  const double* means = nullptr;        ///< (J, D) row-major
  const double* scales = nullptr;       ///< (J) standard deviations s_j > 0
  const double* log_weights = nullptr;  ///< (J) log w_j, normalized (sum_j w_j = 1)
  int components = 0;                   ///< J
  int dim = 0;                          ///< D
};

/// log w_j + log N(x; (1 - t) mu_j, sigma_j(t)^2 I) + (D / 2) log(2 pi): the component's log
/// responsibility up to a constant shared by all components.
template <class T>
DDM_HOST_DEVICE inline double component_log_term(const mixture_view& m, int j, const T* x, double t) noexcept {
  const double s = m.scales[j];
  const double var = (1.0 - t) * (1.0 - t) * s * s + t * t;
  const double* mu = m.means + static_cast<std::ptrdiff_t>(j) * m.dim;
  double d2 = 0.0;
  for (int c = 0; c < m.dim; ++c) {
    const double d = static_cast<double>(x[c]) - (1.0 - t) * mu[c];
    d2 += d * d;
  }
  return m.log_weights[j] - 0.5 * d2 / var - 0.5 * m.dim * std::log(var);
}

/// Softmax in place of n log terms (the row's responsibilities from its component log terms);
/// returns log sum_j exp(term_j). The largest term is subtracted first, so nothing overflows.
DDM_HOST_DEVICE inline double normalize_log_terms(double* r, int n) noexcept {
  double top = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < n; ++j)
    if (r[j] > top) top = r[j];
  double sum = 0.0;
  for (int j = 0; j < n; ++j) {
    r[j] = std::exp(r[j] - top);
    sum += r[j];
  }
  const double inv = 1.0 / sum;
  for (int j = 0; j < n; ++j) r[j] *= inv;
  return top + std::log(sum);
}

/// Responsibilities r_j(x) at time t into r (J values); returns log sum_j exp(term_j), the
/// log-density of x_t up to -(D / 2) log(2 pi).
template <class T>
DDM_HOST_DEVICE inline double mixture_responsibilities_row(const mixture_view& m, const T* x, double t,
                                                           double* r) noexcept {
  for (int j = 0; j < m.components; ++j) r[j] = component_log_term(m, j, x, t);
  return normalize_log_terms(r, m.components);
}

/// From the responsibilities r (J values): returns abar = sum_j r_j a_j and turns r into r_j b_j,
/// so that v = abar x - sum_j (r_j b_j) mu_j.
DDM_HOST_DEVICE inline double velocity_coefficients(const mixture_view& m, double t, double* r) noexcept {
  double abar = 0.0;
  for (int j = 0; j < m.components; ++j) {
    const double s = m.scales[j];
    const double var = (1.0 - t) * (1.0 - t) * s * s + t * t;
    abar += r[j] * (t - (1.0 - t) * s * s) / var;
    r[j] *= t / var;  // r_j b_j
  }
  return abar;
}

/// v(x, t) of the mixture for one row. `scratch` holds J doubles.
template <class T>
DDM_HOST_DEVICE inline void mixture_velocity_row(const mixture_view& m, const T* x, double t, T* v,
                                                 double* scratch) noexcept {
  mixture_responsibilities_row(m, x, t, scratch);
  const double abar = velocity_coefficients(m, t, scratch);
  for (int c = 0; c < m.dim; ++c) {
    double acc = abar * static_cast<double>(x[c]);
    for (int j = 0; j < m.components; ++j) acc -= scratch[j] * m.means[static_cast<std::ptrdiff_t>(j) * m.dim + c];
    v[c] = static_cast<T>(acc);
  }
}

/// out = J(x, t) u for one row (the exact Jacobian-vector product of mixture_velocity_row).
/// `scratch` holds 2 J doubles.
template <class T>
DDM_HOST_DEVICE inline void mixture_jvp_row(const mixture_view& m, const T* x, double t, const T* u, T* out,
                                            double* scratch) noexcept {
  double* r = scratch;
  double* cj = scratch + m.components;
  mixture_responsibilities_row(m, x, t, r);
  double abar = 0.0;
  double cbar = 0.0;
  for (int j = 0; j < m.components; ++j) {
    const double s = m.scales[j];
    const double var = (1.0 - t) * (1.0 - t) * s * s + t * t;
    const double* mu = m.means + static_cast<std::ptrdiff_t>(j) * m.dim;
    double c = 0.0;
    for (int k = 0; k < m.dim; ++k) c -= (static_cast<double>(x[k]) - (1.0 - t) * mu[k]) * static_cast<double>(u[k]);
    cj[j] = c / var;
    abar += r[j] * (t - (1.0 - t) * s * s) / var;
    cbar += r[j] * cj[j];
  }
  // d_j = r_j (c_j - cbar); out = abar u + (sum_j d_j a_j) x - sum_j d_j b_j mu_j
  double da = 0.0;
  for (int j = 0; j < m.components; ++j) {
    const double s = m.scales[j];
    const double var = (1.0 - t) * (1.0 - t) * s * s + t * t;
    const double dj = r[j] * (cj[j] - cbar);
    da += dj * (t - (1.0 - t) * s * s) / var;
    cj[j] = dj * t / var;  // d_j b_j
  }
  for (int c = 0; c < m.dim; ++c) {
    double acc = abar * static_cast<double>(u[c]) + da * static_cast<double>(x[c]);
    for (int j = 0; j < m.components; ++j) acc -= cj[j] * m.means[static_cast<std::ptrdiff_t>(j) * m.dim + c];
    out[c] = static_cast<T>(acc);
  }
}

/// log p(x) of the data (t = 0): log sum_j w_j N(x; mu_j, s_j^2 I), with every constant. Stable
/// (log-sum-exp) far from every component. `scratch` holds J doubles.
template <class T>
DDM_HOST_DEVICE inline double mixture_log_density_row(const mixture_view& m, const T* x, double* scratch) noexcept {
  constexpr double log_two_pi = 1.8378770664093454835606594728112;
  return mixture_responsibilities_row(m, x, 0.0, scratch) - 0.5 * m.dim * log_two_pi;
}

/// Cluster logits from the J component log terms of one row (any common shift): logits_k =
/// (logsumexp over cluster k's terms - the row's largest term) / tau, where cluster k owns
/// components [cluster_begin[k], cluster_begin[k + 1]).
template <class T>
DDM_HOST_DEVICE inline void cluster_logits_from_terms(const double* terms, int components, const int* cluster_begin,
                                                      int clusters, double inv_tau, T* logits) noexcept {
  // Shift by the row's largest term so that the softmax over clusters sees moderate numbers.
  double top = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < components; ++j)
    if (terms[j] > top) top = terms[j];
  for (int k = 0; k < clusters; ++k) {
    double peak = -std::numeric_limits<double>::infinity();
    for (int j = cluster_begin[k]; j < cluster_begin[k + 1]; ++j)
      if (terms[j] > peak) peak = terms[j];
    double sum = 0.0;
    for (int j = cluster_begin[k]; j < cluster_begin[k + 1]; ++j) sum += std::exp(terms[j] - peak);
    logits[k] = static_cast<T>((peak + std::log(sum) - top) * inv_tau);
  }
}

/// Cluster logits of the exact router for one row: logits_k = log P(k | x_t) / tau + const, where
/// cluster k owns components [cluster_begin[k], cluster_begin[k + 1]) of the whole mixture `m`
/// (whose weights are the overall w_j = P_k pi_kj). `scratch` holds J doubles.
template <class T>
DDM_HOST_DEVICE inline void cluster_logits_row(const mixture_view& m, const int* cluster_begin, int clusters,
                                               const T* x, double t, double inv_tau, T* logits,
                                               double* scratch) noexcept {
  for (int j = 0; j < m.components; ++j) scratch[j] = component_log_term(m, j, x, t);
  cluster_logits_from_terms(scratch, m.components, cluster_begin, clusters, inv_tau, logits);
}

}  // namespace ddm::synthetic
