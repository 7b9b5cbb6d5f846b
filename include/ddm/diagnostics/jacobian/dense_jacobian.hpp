#pragma once
// The whole Jacobian J_r(x, t) of every row, one column at a time: column j is J e_j. Meant for
// small D (tests, toy problems, checking an estimator against the truth); its cost grows as D.
//
// Layout: the result is a (B, D * D) batch whose row r holds J_r column by column,
//
//     jacobian(r, j * D + i) = J_r(i, j) = d v_i / d x_j     (at row r's state)
//
// so that each product J e_j lands in one contiguous block of D values per row.
//
// Cost: D Jacobian-vector products (2 D field evaluations by finite differences, D jvp calls with
// an exact jvp). With finite differences the step along e_j moves one coordinate by
// eta (1 + rms(x_r)) sqrt(D) (jacobian_products.hpp), which is why D should stay small.

#include <cstddef>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/diagnostics/jacobian/jacobian_products.hpp"

namespace ddm::diagnostics {

struct dense_jacobian_options {
  derivative_options derivative{};
  /// Refuse D above this (B * D * D values are allocated and 2 D evaluations spent).
  index_t max_cols = 1024;
};

template <class T, class Space = host_space>
struct dense_jacobian_result {
  batch<T, Space> jacobian;  // (B, D * D), column-major per row
  index_t dim = 0;           // D
  std::size_t field_evaluations = 0;
  std::size_t exact_products = 0;

  /// J_r(i, j); host-accessible spaces only.
  [[nodiscard]] T entry(index_t r, index_t i, index_t j) const
    requires(Space::host_accessible)
  {
    return jacobian(r, j * dim + i);
  }
};

/// J_r(x, t) for every row of x, by D Jacobian-vector products with the unit vectors.
template <class Field, class T, class Space>
[[nodiscard]] dense_jacobian_result<T, Space> dense_jacobian(const execution_context<Space>& ctx, Field&& f,
                                                             batch_view<const T, Space> x, double t,
                                                             dense_jacobian_options options = {}) {
  const char* where = "ddm::diagnostics::dense_jacobian";
  ddm::require_non_empty(where, "x", x);
  const index_t d = x.cols();
  if (d > options.max_cols)
    throw argument_error(ddm::concat(where, ": x has ", d, " columns, expected at most max_cols = ",
                                             options.max_cols, " (the result holds B * D * D values and costs D "
                                                               "Jacobian-vector products; raise max_cols to allow it)"));
  jacobian_products<T, Space> products(ctx, x.rows(), d, options.derivative);
  dense_jacobian_result<T, Space> result{batch<T, Space>(ctx, x.rows(), d * d), d, 0, 0};
  batch<T, Space> unit(ctx, x.rows(), d);  // zero
  batch<T, Space> column(ctx, x.rows(), d);
  for (index_t j = 0; j < d; ++j) {
    const batch_view<T, Space> unit_col(unit.data() + j, x.rows(), 1, d);
    fill(ctx, unit_col, T(1));
    products.jvp(f, x, t, unit.cview(), column.view());
    fill(ctx, unit_col, T(0));
    // Fields may assume contiguous output, so the product is computed contiguously, then placed.
    copy(ctx, batch_view<T, Space>(result.jacobian.data() + j * d, x.rows(), d, d * d), column.cview());
  }
  result.field_evaluations = products.field_evaluations();
  result.exact_products = products.exact_products();
  return result;
}

}  // namespace ddm::diagnostics
