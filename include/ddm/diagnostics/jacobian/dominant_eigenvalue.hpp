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
      : power_("ddm::diagnostics::eigenvalue_estimator", ctx, rows, cols, options) {}

  /// Estimate at (x, t), the start vector drawn from Philox stream `stream`.
  template <class Field>
  [[nodiscard]] power_iteration_result operator()(Field& f, batch_view<const T, Space> x, double t,
                                                  std::uint64_t stream) {
    const char* where = "ddm::diagnostics::eigenvalue_estimator";
    auto& products = power_.products();
    // M = J: m = J u, mu = <u, J u>.
    auto result = power_.run(where, f, x, t, stream,
                             [&](Field& g, batch_view<const T, Space> at, double tt, batch_view<const T, Space> u,
                                 batch_view<T, Space> m, std::span<double> mu) {
                               products.jvp(g, at, tt, u, m);
                               row_dots(products.context(), u, m.as_const(), mu);
                             });
    ddm::require_finite_rows(where, "the dominant eigenvalue", result.value, t);
    return result;
  }

  template <class Field>
  [[nodiscard]] power_iteration_result operator()(Field& f, batch_view<const T, Space> x, double t) {
    return (*this)(f, x, t, power_.options().stream);
  }

  [[nodiscard]] const power_iteration_options& options() const noexcept { return power_.options(); }

 private:
  detail::power_iteration<T, Space> power_;
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
