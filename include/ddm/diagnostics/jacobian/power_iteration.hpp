#pragma once
// What the power-iteration estimators (dominant_eigenvalue.hpp, spectral_norm.hpp) share: their
// options, their per-row result, and the iteration itself (power_iteration), to which each
// estimator gives only its map M and its Rayleigh quotient.
//
// Power iteration on a linear map M (M = J for the dominant eigenvalue, M = J^T J for the
// spectral norm) repeats u <- M u / ||M u|| from a random unit start, per row. The Rayleigh
// quotient mu_r = <u_r, M u_r> converges to the eigenvalue of largest magnitude when that
// eigenvalue is real and strictly dominant, at the rate |lambda_2 / lambda_1| per iteration. The
// relative residual ||M u - mu u|| / ||M u|| is the sine of the angle between u and M u (0 for an
// eigenvector, at most 1); a row counts as converged once it is at most `tolerance`, and
// iteration ends when every row has converged or after `max_iterations`.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/diagnostics/jacobian/jacobian_products.hpp"
#include "ddm/diagnostics/jacobian/probes.hpp"
#include "ddm/core/row_ops.hpp"

namespace ddm::diagnostics {

struct power_iteration_options {
  std::size_t max_iterations = 100;
  double tolerance = 1e-6;        ///< on the relative residual ||M u - mu u|| / ||M u||
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;       ///< the Gaussian start vector uses this Philox stream
  derivative_options derivative{};
};

struct power_iteration_result {
  std::vector<double> value;               ///< (B) the estimate (eigenvalue or singular value)
  std::vector<double> residual;            ///< (B) relative residual of the last iterate, in [0, 1]
  std::vector<std::uint8_t> converged;     ///< (B) 1 when residual <= tolerance
  std::size_t iterations = 0;              ///< iterations run (the same for every row)
  std::size_t field_evaluations = 0;
  std::size_t exact_products = 0;

  [[nodiscard]] bool all_converged() const noexcept {
    for (auto c : converged)
      if (c == 0) return false;
    return true;
  }
};

namespace detail {

inline void check_power_options(const char* where, const power_iteration_options& o) {
  if (o.max_iterations < 1) ddm::fail_argument(where, "max_iterations", o.max_iterations, ">= 1");
  if (!(o.tolerance >= 0.0) || !std::isfinite(o.tolerance))
    ddm::fail_argument(where, "tolerance", o.tolerance, "a finite value >= 0");
}

// u_r <- u_r / ||u_r||; rows of norm 0 are left as they are. `sq` holds the squared norms.
template <class T, class Space>
void normalize_rows(const execution_context<Space>& ctx, batch_view<T, Space> u, std::span<double> sq) {
  row_squared_norms(ctx, u.as_const(), sq);
  for (double& s : sq) s = s > 0.0 ? 1.0 / std::sqrt(s) : 1.0;
  scale_rows(ctx, u, std::span<const double>(sq), u.as_const());
}

// The random unit start vector of every row.
template <class T, class Space>
void power_start(const execution_context<Space>& ctx, batch_view<T, Space> u, const power_iteration_options& o,
                 std::span<double> sq) {
  fill_probe(ctx, u, probe_kind::gaussian, o.seed, o.stream);
  normalize_rows(ctx, u, sq);
}

// residual_r = ||m_r - mu_r u_r|| / ||m_r|| (0 when m_r = 0), with m = M u; `m_sq` holds
// ||m_r||^2 on entry; `work` and `coef` are scratch.
template <class T, class Space>
void relative_residuals(const execution_context<Space>& ctx, batch_view<const T, Space> m,
                        batch_view<const T, Space> u, std::span<const double> mu, std::span<const double> m_sq,
                        batch_view<T, Space> work, std::span<double> coef, std::span<double> residual) {
  for (std::size_t r = 0; r < mu.size(); ++r) coef[r] = -mu[r];
  axpy_rows(ctx, work, m, std::span<const double>(coef), u);
  row_squared_norms(ctx, work.as_const(), residual);
  for (std::size_t r = 0; r < mu.size(); ++r)
    residual[r] = m_sq[r] > 0.0 ? std::sqrt(residual[r] / m_sq[r]) : 0.0;
}

// Power iteration with its workspace on (rows, cols) batches: the start, the residuals, the
// convergence test and the renormalization, for any map M given as step(f, x, t, u, m, mu),
// which writes m = M u and the Rayleigh quotient mu_r = <u_r, M u_r> (||u_r|| = 1). The result's
// value is mu of the last iterate.
template <class T, class Space>
class power_iteration {
 public:
  power_iteration(const char* where, const execution_context<Space>& ctx, index_t rows, index_t cols,
                  const power_iteration_options& options)
      : options_(options), products_(ctx, rows, cols, options.derivative), u_(ctx, rows, cols), m_(ctx, rows, cols),
        work_(ctx, rows, cols) {
    check_power_options(where, options);
  }

  template <class Field, class Step>
  [[nodiscard]] power_iteration_result run(const char* where, Field& f, batch_view<const T, Space> x, double t,
                                           std::uint64_t stream, Step&& step) {
    const product_tally<T, Space> tally(where, products_, x);
    const auto& ctx = products_.context();
    const auto rows = static_cast<std::size_t>(products_.rows());
    std::vector<double> mu(rows);
    std::vector<double> sq(rows);
    std::vector<double> coef(rows);
    power_iteration_result result;
    result.residual.resize(rows);
    result.converged.assign(rows, 0);

    power_iteration_options o = options_;
    o.stream = stream;
    power_start(ctx, u_.view(), o, std::span<double>(sq));
    for (std::size_t k = 0; k < options_.max_iterations; ++k) {
      step(f, x, t, u_.cview(), m_.view(), std::span<double>(mu));
      row_squared_norms(ctx, m_.cview(), std::span<double>(sq));
      relative_residuals(ctx, m_.cview(), u_.cview(), std::span<const double>(mu), std::span<const double>(sq),
                         work_.view(), std::span<double>(coef), std::span<double>(result.residual));
      result.iterations = k + 1;
      bool all = true;
      for (std::size_t r = 0; r < rows; ++r) {
        result.converged[r] = result.residual[r] <= options_.tolerance ? 1 : 0;
        all = all && result.converged[r] != 0;
      }
      if (all) break;
      // Rows with M u = 0 keep their u (normalize_rows leaves zero rows alone, and mu = 0 there).
      copy(ctx, u_.view(), m_.cview());
      normalize_rows(ctx, u_.view(), std::span<double>(sq));
    }
    result.value = std::move(mu);
    tally.charge(result);
    return result;
  }

  [[nodiscard]] const power_iteration_options& options() const noexcept { return options_; }
  [[nodiscard]] jacobian_products<T, Space>& products() noexcept { return products_; }

 private:
  power_iteration_options options_;
  jacobian_products<T, Space> products_;
  batch<T, Space> u_;     // the unit iterate
  batch<T, Space> m_;     // M u
  batch<T, Space> work_;  // M u - mu u
};

}  // namespace detail
}  // namespace ddm::diagnostics
