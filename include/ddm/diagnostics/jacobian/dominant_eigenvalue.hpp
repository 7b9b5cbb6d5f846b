#pragma once
// The eigenvalue of largest magnitude of each row's Jacobian J_r(x, t), by power iteration on J
// (see power_iteration.hpp): u <- J u / ||J u||, lambda_r = <u_r, J_r u_r> with ||u_r|| = 1.
//
// The estimate is signed: a dominant negative eigenvalue (a contracting direction, the usual
// case of a velocity field near the data) comes out negative, as the iterate flips sign each
// step. The iteration converges when the dominant eigenvalue is real and strictly larger in
// magnitude than the others; a dominant complex pair (rotation) or a tie of opposite signs shows
// up as a residual that does not fall, and the row is reported unconverged.
//
// Cost: one Jacobian-vector product per iteration (2 field evaluations by finite differences,
// one jvp call with an exact jvp).

#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/diagnostics/jacobian/jacobian_products.hpp"
#include "ddm/diagnostics/jacobian/power_iteration.hpp"
#include "ddm/core/row_ops.hpp"

namespace ddm::diagnostics {

/// Power iteration for the dominant eigenvalue, with its workspace, on (rows, cols) batches.
template <class T, class Space = host_space>
class eigenvalue_estimator {
 public:
  eigenvalue_estimator(const execution_context<Space>& ctx, index_t rows, index_t cols,
                       power_iteration_options options = {})
      : options_(options),
        products_(ctx, rows, cols, options.derivative),
        u_(ctx, rows, cols),
        w_(ctx, rows, cols),
        work_(ctx, rows, cols) {
    detail::check_power_options("ddm::diagnostics::eigenvalue_estimator", options);
  }

  /// Estimate at (x, t), the start vector drawn from Philox stream `stream`.
  template <class Field>
  [[nodiscard]] power_iteration_result operator()(Field& f, batch_view<const T, Space> x, double t,
                                                  std::uint64_t stream) {
    const char* where = "ddm::diagnostics::eigenvalue_estimator";
    ddm::require_shape(where, "x", x, products_.rows(), products_.cols());
    const auto& ctx = products_.context();
    const auto rows = static_cast<std::size_t>(products_.rows());
    const std::size_t evals0 = products_.field_evaluations();
    const std::size_t exact0 = products_.exact_products();
    std::vector<double> mu(rows);
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
      row_dots(ctx, u_.cview(), w_.cview(), std::span<double>(mu));
      row_squared_norms(ctx, w_.cview(), std::span<double>(sq));
      detail::relative_residuals(ctx, w_.cview(), u_.cview(), std::span<const double>(mu),
                                 std::span<const double>(sq), work_.view(), std::span<double>(coef),
                                 std::span<double>(result.residual));
      result.iterations = k + 1;
      bool all = true;
      for (std::size_t r = 0; r < rows; ++r) {
        result.converged[r] = result.residual[r] <= options_.tolerance ? 1 : 0;
        all = all && result.converged[r] != 0;
      }
      if (all) break;
      // Rows with J u = 0 keep their u (normalize_rows leaves zero rows alone, and mu = 0 there).
      copy(ctx, u_.view(), w_.cview());
      detail::normalize_rows(ctx, u_.view(), std::span<double>(sq));
    }
    ddm::require_finite_rows(where, "the dominant eigenvalue", mu, t);
    result.value = std::move(mu);
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
  batch<T, Space> work_;
};

/// The eigenvalue of largest magnitude of J_r(x, t) for every row of x (signed).
template <class Field, class T, class Space>
[[nodiscard]] power_iteration_result estimate_dominant_eigenvalue(const execution_context<Space>& ctx, Field&& f,
                                                                  batch_view<const T, Space> x, double t,
                                                                  power_iteration_options options = {}) {
  eigenvalue_estimator<T, Space> estimator(ctx, x.rows(), x.cols(), options);
  return estimator(f, x, t);
}

}  // namespace ddm::diagnostics
