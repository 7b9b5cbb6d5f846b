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
      : power_("ddm::diagnostics::spectral_norm_estimator", ctx, rows, cols, options), w_(ctx, rows, cols) {}

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
    auto& products = power_.products();
    // M = J^T J: w = J u, m = J^T w, mu = <u, J^T J u> = ||w||^2 with ||u|| = 1.
    auto result = power_.run(where, f, x, t, stream,
                             [&](Field& g, batch_view<const T, Space> at, double tt, batch_view<const T, Space> u,
                                 batch_view<T, Space> m, std::span<double> mu) {
                               products.jvp(g, at, tt, u, w_.view());
                               products.vjp(g, at, tt, w_.cview(), m);
                               row_squared_norms(products.context(), w_.cview(), mu);
                             });
    for (double& v : result.value) v = std::sqrt(v);
    ddm::require_finite_rows(where, "the spectral norm", result.value, t);
    return result;
  }

  template <class Field>
  [[nodiscard]] power_iteration_result operator()(Field& f, batch_view<const T, Space> x, double t) {
    return (*this)(f, x, t, power_.options().stream);
  }

  [[nodiscard]] const power_iteration_options& options() const noexcept { return power_.options(); }

 private:
  detail::power_iteration<T, Space> power_;
  batch<T, Space> w_;  // J u
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
