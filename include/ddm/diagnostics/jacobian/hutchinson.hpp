#pragma once
// Hutchinson's estimate of the mean squared singular value of each row's Jacobian:
//
//     F_r = ||J_r||_F^2 / D = E_z[ ||J_r z||^2 ] / D          (E[z z^T] = I)
//
// averaged over P probes z_1..z_P (Rademacher or Gaussian, from Philox):
//
//     F_r ~ mean_p q_rp,   q_rp = ||J_r z_rp||^2 / D,   standard error = sd_p(q_rp) / sqrt(P)
//
// with the sample standard deviation (divisor P - 1). sqrt(F_r) is the RMS singular value of
// J_r, an "average gain" of the field under a random perturbation of row r. Probe p of a call
// uses Philox stream `stream + p`, so an estimate is a pure function of (seed, stream).
//
// Cost: P Jacobian-vector products (2P field evaluations by finite differences, P jvp calls
// with an exact jvp).

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/diagnostics/jacobian/jacobian_products.hpp"
#include "ddm/diagnostics/jacobian/probes.hpp"
#include "ddm/core/row_ops.hpp"

namespace ddm::diagnostics {

struct hutchinson_options {
  std::size_t probes = 8;                   ///< P >= 2 (the standard error needs two)
  probe_kind kind = probe_kind::rademacher;
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;                 ///< probe p uses Philox stream `stream + p`
  derivative_options derivative{};
};

/// Per-row estimates with their standard errors and what they cost.
struct hutchinson_result {
  std::vector<double> mean;            ///< (B) estimate of ||J_r||_F^2 / D
  std::vector<double> standard_error;  ///< (B) sd of the probe values / sqrt(P)
  std::size_t probes = 0;
  std::size_t field_evaluations = 0;
  std::size_t exact_products = 0;
};

namespace detail {
inline void check_probes(const char* where, std::size_t probes) {
  if (probes < 2) ddm::fail_argument(where, "probes", probes, ">= 2 (a standard error needs two probes)");
}
}  // namespace detail

/// Hutchinson's estimator with its workspace, for repeated estimates on (rows, cols) batches.
template <class T, class Space = host_space>
class hutchinson_estimator {
 public:
  hutchinson_estimator(const execution_context<Space>& ctx, index_t rows, index_t cols, hutchinson_options options = {})
      : options_(options),
        products_(ctx, rows, cols, options.derivative),
        z_(ctx, rows, cols),
        jz_(ctx, rows, cols),
        q_(static_cast<std::size_t>(rows)) {
    detail::check_probes("ddm::diagnostics::hutchinson_estimator", options.probes);
  }

  /// Estimate at (x, t) with probes from streams stream + 0 .. stream + P - 1.
  template <class Field>
  [[nodiscard]] hutchinson_result operator()(Field& f, batch_view<const T, Space> x, double t, std::uint64_t stream) {
    const char* where = "ddm::diagnostics::hutchinson_estimator";
    const detail::product_tally<T, Space> tally(where, products_, x);
    const auto rows = static_cast<std::size_t>(products_.rows());
    const double inv_d = 1.0 / static_cast<double>(products_.cols());
    // Welford's running mean and sum of squared deviations, per row.
    std::vector<double> mean(rows, 0.0);
    std::vector<double> m2(rows, 0.0);
    for (std::size_t p = 0; p < options_.probes; ++p) {
      fill_probe(products_.context(), z_.view(), options_.kind, options_.seed, stream + p);
      products_.jvp(f, x, t, z_.cview(), jz_.view());
      row_squared_norms(products_.context(), jz_.cview(), std::span<double>(q_));
      const double n = static_cast<double>(p + 1);
      for (std::size_t r = 0; r < rows; ++r) {
        const double q = q_[r] * inv_d;
        const double delta = q - mean[r];
        mean[r] += delta / n;
        m2[r] += delta * (q - mean[r]);
      }
    }
    hutchinson_result result;
    result.probes = options_.probes;
    result.standard_error.resize(rows);
    const double p = static_cast<double>(options_.probes);
    for (std::size_t r = 0; r < rows; ++r) result.standard_error[r] = std::sqrt(m2[r] / (p - 1.0) / p);
    ddm::require_finite_rows(where, "the estimate of ||J||_F^2 / D", mean, t);
    result.mean = std::move(mean);
    tally.charge(result);
    return result;
  }

  /// Estimate with the options' stream.
  template <class Field>
  [[nodiscard]] hutchinson_result operator()(Field& f, batch_view<const T, Space> x, double t) {
    return (*this)(f, x, t, options_.stream);
  }

  [[nodiscard]] const hutchinson_options& options() const noexcept { return options_; }
  [[nodiscard]] const jacobian_products<T, Space>& products() const noexcept { return products_; }

 private:
  hutchinson_options options_;
  jacobian_products<T, Space> products_;
  batch<T, Space> z_;
  batch<T, Space> jz_;
  std::vector<double> q_;
};

/// Hutchinson's estimate of ||J_r(x, t)||_F^2 / D for every row of x.
template <class Field, class T, class Space>
[[nodiscard]] hutchinson_result estimate_frobenius(const execution_context<Space>& ctx, Field&& f,
                                                   batch_view<const T, Space> x, double t,
                                                   hutchinson_options options = {}) {
  hutchinson_estimator<T, Space> estimator(ctx, x.rows(), x.cols(), options);
  return estimator(f, x, t);
}

}  // namespace ddm::diagnostics
