#pragma once
// Jacobian-vector products of a velocity field, row by row: out_r = J_r(x, t) u_r, where
// J_r = d v(x, t)_r / d x_r is the Jacobian of row r's velocity with respect to row r's state
// (a field treats rows as independent samples, so the batch's Jacobian is block diagonal).
//
// Exact products come from the field's own members (concepts ddm::has_jvp / ddm::has_vjp):
//
//     f.jvp(x, t, u, out)   out = J u          f.vjp(x, t, u, out)   out = J^T u
//
// Without a jvp member, J u is estimated by central differences with a per-row step scaled to
// the state's magnitude:
//
//     h_r  = eta (1 + rms(x_r)) / rms(u_r),       rms(a_r) = ||a_r||_2 / sqrt(D)
//     J_r u_r ~ (v(x + h u, t)_r - v(x - h u, t)_r) / (2 h_r)
//
// so that the perturbation h_r u_r has an RMS of eta (1 + rms(x_r)): relative to the state where
// the state is large, absolute where it is near 0. The truncation error is O(h^2 |v'''|) and the
// rounding error O(epsilon |v| / h); eta = cbrt(epsilon of T) balances the two (about 6.1e-6 for
// double, 4.9e-3 for float). A row with u_r = 0 gets out_r = 0. Vector-Jacobian products have no
// finite-difference form (J^T cannot be probed through v), so vjp() needs the field's member.
//
// Cost: a finite-difference product is 2 field evaluations on the whole batch; an exact one is
// one call of f.jvp / f.vjp (for a network, about the price of 2-3 forward passes).

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/field.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/row_ops.hpp"

namespace ddm::diagnostics {

enum class derivative_mode {
  automatic,          ///< the field's jvp member when it has one, central differences otherwise
  exact,              ///< the field's jvp member; an error when it has none
  finite_difference,  ///< central differences even when the field has a jvp member
};

struct derivative_options {
  derivative_mode mode = derivative_mode::automatic;
  /// eta in h_r = eta (1 + rms(x_r)) / rms(u_r); 0 selects cbrt(machine epsilon of T).
  double relative_step = 0.0;
};

/// The default eta of the finite-difference step for value type T: cbrt(epsilon).
template <class T>
[[nodiscard]] inline double default_relative_step() noexcept {
  return std::cbrt(static_cast<double>(std::numeric_limits<T>::epsilon()));
}

namespace detail {
template <class A, class B, class S>
void require_disjoint(const char* where, const char* name, const char* other, const batch_view<A, S>& a,
                      const batch_view<B, S>& b) {
  const auto* a0 = reinterpret_cast<const char*>(a.data());
  const auto* b0 = reinterpret_cast<const char*>(b.data());
  const bool same = a0 == b0 && a.stride() == b.stride();
  if (!a.empty() && !b.empty() && (same || !ddm::detail::alias_ok(a, b)))
    throw argument_error(ddm::concat(where, ": argument '", name, "' shares memory with '", other,
                                             "', expected disjoint buffers"));
}
}  // namespace detail

/// Jacobian-vector (and vector-Jacobian) products of fields on (rows, cols) batches of T, with
/// the workspace that finite differences need. Counts what it spends.
template <class T, class Space = host_space>
class jacobian_products {
 public:
  jacobian_products(const execution_context<Space>& ctx, index_t rows, index_t cols, derivative_options options = {})
      : ctx_(ctx),
        options_(options),
        rows_(rows),
        cols_(cols),
        rms_x_(static_cast<std::size_t>(rows)),
        rms_u_(static_cast<std::size_t>(rows)),
        coef_(static_cast<std::size_t>(rows)) {
    const char* where = "ddm::diagnostics::jacobian_products";
    if (rows < 1) ddm::fail_argument<empty_batch_error>(where, "rows", rows, ">= 1");
    if (cols < 1) ddm::fail_argument<empty_batch_error>(where, "cols", cols, ">= 1");
    if (!(options.relative_step >= 0.0) || !std::isfinite(options.relative_step))
      ddm::fail_argument(where, "relative_step", options.relative_step, "a finite value >= 0 (0 = default)");
    eta_ = options.relative_step > 0.0 ? options.relative_step : default_relative_step<T>();
  }

  /// Whether jvp() uses the field's jvp member (true) or central differences (false).
  template <class Field>
  [[nodiscard]] bool uses_exact_jvp() const noexcept {
    if constexpr (has_jvp<Field, T, Space>) return options_.mode != derivative_mode::finite_difference;
    return false;
  }

  /// out = J(x, t) u, row by row. `out` must not share memory with x or u.
  template <class Field>
  void jvp(Field& f, batch_view<const T, Space> x, double t, batch_view<const T, Space> u, batch_view<T, Space> out) {
    require_velocity_field<Field, T, Space>();
    const char* where = "ddm::diagnostics::jacobian_products::jvp";
    check_(where, x, u, out);
    if constexpr (has_jvp<Field, T, Space>) {
      if (options_.mode != derivative_mode::finite_difference) {
        f.jvp(x, t, u, out);
        ++exact_products_;
        return;
      }
    } else {
      if (options_.mode == derivative_mode::exact)
        throw argument_error(ddm::concat(where, ": derivative_mode::exact was requested, but the field has "
                                                        "no member jvp(x, t, u, out); expected a field with ddm::has_jvp, "
                                                        "or derivative_mode::automatic / finite_difference"));
    }
    finite_difference_(f, x, t, u, out);
  }

  /// out = J(x, t)^T u, row by row, through the field's vjp member (required).
  template <class Field>
  void vjp(Field& f, batch_view<const T, Space> x, double t, batch_view<const T, Space> u, batch_view<T, Space> out) {
    static_assert(has_vjp<Field, T, Space>,
                  "ddm::diagnostics: this estimator needs J^T u, which has no finite-difference form: the field "
                  "must offer a member vjp(batch_view<const T> x, double t, batch_view<const T> u, "
                  "batch_view<T> out) writing J(x, t)^T u row by row (concept ddm::has_vjp)");
    check_("ddm::diagnostics::jacobian_products::vjp", x, u, out);
    f.vjp(x, t, u, out);
    ++exact_products_;
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  /// eta of the finite-difference step actually used.
  [[nodiscard]] double relative_step() const noexcept { return eta_; }
  [[nodiscard]] const derivative_options& options() const noexcept { return options_; }
  [[nodiscard]] const execution_context<Space>& context() const noexcept { return ctx_; }
  /// Field evaluations spent on finite differences so far (2 per product).
  [[nodiscard]] std::size_t field_evaluations() const noexcept { return field_evaluations_; }
  /// Calls of the field's jvp / vjp members so far.
  [[nodiscard]] std::size_t exact_products() const noexcept { return exact_products_; }

 private:
  void check_(const char* where, batch_view<const T, Space> x, batch_view<const T, Space> u,
              batch_view<T, Space> out) const {
    ddm::require_shape(where, "x", x, rows_, cols_);
    ddm::require_shape(where, "u", u, rows_, cols_);
    ddm::require_shape(where, "out", out, rows_, cols_);
    detail::require_disjoint(where, "out", "x", out.as_const(), x);
    detail::require_disjoint(where, "out", "u", out.as_const(), u);
  }

  template <class Field>
  void finite_difference_(Field& f, batch_view<const T, Space> x, double t, batch_view<const T, Space> u,
                          batch_view<T, Space> out) {
    if (shifted_.rows() != rows_) {
      shifted_ = batch<T, Space>(ctx_, rows_, cols_);
      minus_ = batch<T, Space>(ctx_, rows_, cols_);
    }
    row_squared_norms(ctx_, x, std::span<double>(rms_x_));
    row_squared_norms(ctx_, u, std::span<double>(rms_u_));
    const double inv_d = 1.0 / static_cast<double>(cols_);
    for (std::size_t r = 0; r < coef_.size(); ++r) {
      const double ru = std::sqrt(rms_u_[r] * inv_d);
      coef_[r] = ru > 0.0 ? eta_ * (1.0 + std::sqrt(rms_x_[r] * inv_d)) / ru : 0.0;
    }
    axpy_rows(ctx_, shifted_.view(), x, std::span<const double>(coef_), u);  // x + h u
    f(shifted_.cview(), t, out);
    for (double& c : coef_) c = -c;
    axpy_rows(ctx_, shifted_.view(), x, std::span<const double>(coef_), u);  // x - h u
    f(shifted_.cview(), t, minus_.view());
    field_evaluations_ += 2;
    lincomb(ctx_, out, {1.0, -1.0}, out, minus_);
    for (double& c : coef_) c = c < 0.0 ? -0.5 / c : 0.0;  // 1 / (2 h)
    scale_rows(ctx_, out, std::span<const double>(coef_), out.as_const());
  }

  execution_context<Space> ctx_;
  derivative_options options_;
  index_t rows_;
  index_t cols_;
  double eta_ = 0.0;
  batch<T, Space> shifted_;
  batch<T, Space> minus_;
  std::vector<double> rms_x_;
  std::vector<double> rms_u_;
  std::vector<double> coef_;
  std::size_t field_evaluations_ = 0;
  std::size_t exact_products_ = 0;
};

/// out = J(x, t) u for a single product (allocates its workspace; use jacobian_products to reuse it).
namespace detail {

// What every Jacobian estimator does around its own loop: check x against the workspace's shape
// at the start, and charge the estimate with the products it made (field evaluations, exact
// products) at the end.
template <class T, class Space>
class product_tally {
 public:
  product_tally(const char* where, const jacobian_products<T, Space>& products, batch_view<const T, Space> x)
      : products_(&products), evaluations_(products.field_evaluations()), exact_(products.exact_products()) {
    ddm::require_shape(where, "x", x, products.rows(), products.cols());
  }

  template <class Result>
  void charge(Result& result) const noexcept {
    result.field_evaluations = products_->field_evaluations() - evaluations_;
    result.exact_products = products_->exact_products() - exact_;
  }

 private:
  const jacobian_products<T, Space>* products_;
  std::size_t evaluations_;
  std::size_t exact_;
};

}  // namespace detail

template <class Field, class T, class Space>
void jvp(const execution_context<Space>& ctx, Field&& f, batch_view<const T, Space> x, double t,
         batch_view<const T, Space> u, batch_view<T, Space> out, derivative_options options = {}) {
  jacobian_products<T, Space> products(ctx, x.rows(), x.cols(), options);
  products.jvp(f, x, t, u, out);
}

}  // namespace ddm::diagnostics
