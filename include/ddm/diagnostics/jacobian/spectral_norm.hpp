#pragma once
// The spectral norm sigma_max(J_r) of each row's Jacobian, by power iteration on J^T J (see
// power_iteration.hpp): w = J u, sigma_r^2 = ||w_r||^2 = <u_r, J_r^T J_r u_r>, u <- J^T w / ||J^T w||.
// sigma_max is the local Lipschitz constant of the field in row r: the largest factor by which
// any small perturbation of x_r can be amplified in v_r.
//
// It needs J^T u, so the field must offer an exact vjp member (concept ddm::has_vjp); J u comes
// from its jvp member when it has one, from central differences otherwise. The estimate
// ||J u|| never exceeds sigma_max and increases towards it; it converges at the rate
// (sigma_2 / sigma_1)^2 per iteration.
//
// Cost: per iteration one Jacobian-vector product (1 jvp call, or 2 field evaluations) and one
// vjp call.

#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/field.hpp"
#include "ddm/diagnostics/jacobian/jacobian_products.hpp"
#include "ddm/diagnostics/jacobian/power_iteration.hpp"
#include "ddm/core/row_ops.hpp"

namespace ddm::diagnostics {

/// Power iteration on J^T J, with its workspace, on (rows, cols) batches.
template <class T, class Space = host_space>
class spectral_norm_estimator {
 public:
  spectral_norm_estimator(const execution_context<Space>& ctx, index_t rows, index_t cols,
                          power_iteration_options options = {})
      : options_(options),
        products_(ctx, rows, cols, options.derivative),
        u_(ctx, rows, cols),
        w_(ctx, rows, cols),
        z_(ctx, rows, cols),
        work_(ctx, rows, cols) {
    detail::check_power_options("ddm::diagnostics::spectral_norm_estimator", options);
  }

  /// Estimate at (x, t), the start vector drawn from Philox stream `stream`.
  template <class Field>
  [[nodiscard]] power_iteration_result operator()(Field& f, batch_view<const T, Space> x, double t,
                                                  std::uint64_t stream) {
    static_assert(has_vjp<Field, T, Space>,
                  "ddm::diagnostics::spectral_norm needs J^T u, which has no finite-difference form: the field "
                  "must offer a member vjp(batch_view<const T> x, double t, batch_view<const T> u, "
                  "batch_view<T> out) writing J(x, t)^T u row by row (concept ddm::has_vjp). Without one, use "
                  "estimate_frobenius (RMS singular value) or estimate_dominant_eigenvalue.");
    const char* where = "ddm::diagnostics::spectral_norm_estimator";
    ddm::require_shape(where, "x", x, products_.rows(), products_.cols());
    const auto& ctx = products_.context();
    const auto rows = static_cast<std::size_t>(products_.rows());
    const std::size_t evals0 = products_.field_evaluations();
    const std::size_t exact0 = products_.exact_products();
    std::vector<double> s2(rows);
    std::vector<double> sq(rows);
    std::vector<double> coef(rows);
    power_iteration_result result;
    result.residual.resize(rows);
    result.converged.assign(rows, 0);

    power_iteration_options o = options_;
    o.stream = stream;
    detail::power_start(ctx, u_.view(), o, std::span<double>(sq));
    for (std::size_t k = 0; k < options_.max_iterations; ++k) {
      products_.jvp(f, x, t, u_.cview(), w_.view());
      products_.vjp(f, x, t, w_.cview(), z_.view());
      row_squared_norms(ctx, w_.cview(), std::span<double>(s2));  // <u, J^T J u> with ||u|| = 1
      row_squared_norms(ctx, z_.cview(), std::span<double>(sq));
      detail::relative_residuals(ctx, z_.cview(), u_.cview(), std::span<const double>(s2),
                                 std::span<const double>(sq), work_.view(), std::span<double>(coef),
                                 std::span<double>(result.residual));
      result.iterations = k + 1;
      bool all = true;
      for (std::size_t r = 0; r < rows; ++r) {
        result.converged[r] = result.residual[r] <= options_.tolerance ? 1 : 0;
        all = all && result.converged[r] != 0;
      }
      if (all) break;
      copy(ctx, u_.view(), z_.cview());
      detail::normalize_rows(ctx, u_.view(), std::span<double>(sq));
    }
    for (double& v : s2) v = std::sqrt(v);
    ddm::require_finite_rows(where, "the spectral norm", s2, t);
    result.value = std::move(s2);
    result.field_evaluations = products_.field_evaluations() - evals0;
    result.exact_products = products_.exact_products() - exact0;
    return result;
  }

  template <class Field>
  [[nodiscard]] power_iteration_result operator()(Field& f, batch_view<const T, Space> x, double t) {
    return (*this)(f, x, t, options_.stream);
  }

  [[nodiscard]] const power_iteration_options& options() const noexcept { return options_; }

 private:
  power_iteration_options options_;
  jacobian_products<T, Space> products_;
  batch<T, Space> u_;
  batch<T, Space> w_;
  batch<T, Space> z_;
  batch<T, Space> work_;
};

/// sigma_max(J_r(x, t)) for every row of x. The field must offer an exact vjp.
template <class Field, class T, class Space>
[[nodiscard]] power_iteration_result estimate_spectral_norm(const execution_context<Space>& ctx, Field&& f,
                                                            batch_view<const T, Space> x, double t,
                                                            power_iteration_options options = {}) {
  spectral_norm_estimator<T, Space> estimator(ctx, x.rows(), x.cols(), options);
  return estimator(f, x, t);
}

}  // namespace ddm::diagnostics
