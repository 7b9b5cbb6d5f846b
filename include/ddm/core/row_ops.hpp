#pragma once
// The state algebra's per-row operations, which the diagnostics use: scaling each row of a (B, D)
// batch by its own coefficient, and per-row reductions read back into host memory.
//
//   axpy_rows(ctx, out, x, c, y)    out_r = x_r + c_r y_r
//   scale_rows(ctx, out, c, x)      out_r = c_r x_r
//   row_dots(ctx, a, b, out)        out[r] = <a_r, b_r>   (host span, accumulated in double)
//   row_squared_norms(ctx, a, out)  out[r] = ||a_r||^2
//
// Per-row coefficients and results are host spans of B doubles: the diagnostics keep their B
// per-row scalars (step sizes, Rayleigh quotients, estimates) on the host, where the statistics
// run, and only the (B, D) work touches the state's memory space. A memory space gets these
// operations by specializing row_ops<Space> (the host one is here; a device one uploads the B
// coefficients and downloads the B reductions), exactly as it specializes ddm::algebra.

#include <cmath>
#include <cstddef>
#include <span>
#include <type_traits>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/parallel.hpp"

namespace ddm {

template <class Space>
struct row_ops {
  static_assert(sizeof(Space) == 0,
                "ddm: there are no per-row operations for this memory space. For "
                "ddm::cuda_space, include <ddm/cuda.hpp> and link ddm::cuda.");
};

template <>
struct row_ops<host_space> {
  template <class T>
  static void axpy(const host_context& ctx, batch_view<T> out, batch_view<const T> x,
                   std::span<const double> c, batch_view<const T> y) {
    const index_t cols = out.cols();
    for_row_ranges(ctx, out.rows(), 2 * cols, [&](const row_range& range) {
      for (index_t r = range.begin; r < range.end; ++r) {
        T* o = out.row(r);
        const T* px = x.row(r);
        const T* py = y.row(r);
        const auto cr = static_cast<T>(c[static_cast<std::size_t>(r)]);
        DDM_PRAGMA_IVDEP
        for (index_t j = 0; j < cols; ++j) o[j] = px[j] + cr * py[j];
      }
    });
  }

  template <class T>
  static void scale(const host_context& ctx, batch_view<T> out, std::span<const double> c,
                    batch_view<const T> x) {
    const index_t cols = out.cols();
    for_row_ranges(ctx, out.rows(), cols, [&](const row_range& range) {
      for (index_t r = range.begin; r < range.end; ++r) {
        T* o = out.row(r);
        const T* px = x.row(r);
        const auto cr = static_cast<T>(c[static_cast<std::size_t>(r)]);
        DDM_PRAGMA_IVDEP
        for (index_t j = 0; j < cols; ++j) o[j] = cr * px[j];
      }
    });
  }

  template <class T>
  static void dots(const host_context& ctx, batch_view<const T> a, batch_view<const T> b, std::span<double> out) {
    ddm::row_dot(ctx, a, b, batch_view<double>(out.data(), a.rows(), 1));
  }
};

// Checks on the per-row host spans, in the form of require_shape.
template <class Span, class V>
void require_row_count(const char* where, const char* name, const Span& s, const V& like) {
  if (static_cast<index_t>(s.size()) != like.rows())
    throw shape_error(ddm::concat(where, ": argument '", name, "' has ", s.size(),
                                          " values, expected one per row (", like.rows(), ")"));
}

/// Throws non_finite_error naming `where`, the quantity and the first non-finite row.
inline void require_finite_rows(const char* where, const char* quantity, std::span<const double> values, double t) {
  for (std::size_t r = 0; r < values.size(); ++r)
    if (!std::isfinite(values[r]))
      throw non_finite_error(ddm::concat(where, ": ", quantity, " of row ", r, " is ", values[r], " at t = ",
                                                 t, "; the field or its derivative returned a NaN or infinity"),
                             -1, t);
}


/// out_r = x_r + c[r] * y_r. `out` may coincide with x or y.
template <class T, class Space>
void axpy_rows(const execution_context<Space>& ctx, batch_view<T, Space> out, batch_view<const T, Space> x,
               std::span<const double> c, batch_view<const T, Space> y) {
  const char* where = "ddm::axpy_rows";
  ddm::require_same_shape(where, "x", x, out);
  ddm::require_same_shape(where, "y", y, out);
  ddm::require_row_count(where, "c", c, out);
  if (!ddm::detail::alias_ok(x, out.as_const()) || !ddm::detail::alias_ok(y, out.as_const()))
    throw argument_error(ddm::concat(where, ": an operand partially overlaps 'out', expected the same "
                                                    "memory or disjoint memory"));
  if (!out.empty()) row_ops<Space>::axpy(ctx, out, x, c, y);
}

/// out_r = c[r] * x_r. `out` may coincide with x.
template <class T, class Space>
void scale_rows(const execution_context<Space>& ctx, batch_view<T, Space> out, std::span<const double> c,
                batch_view<const T, Space> x) {
  const char* where = "ddm::scale_rows";
  ddm::require_same_shape(where, "x", x, out);
  ddm::require_row_count(where, "c", c, out);
  if (!ddm::detail::alias_ok(x, out.as_const()))
    throw argument_error(ddm::concat(where, ": 'x' partially overlaps 'out', expected the same memory or "
                                                    "disjoint memory"));
  if (!out.empty()) row_ops<Space>::scale(ctx, out, c, x);
}

/// out[r] = <a_r, b_r>, into host memory.
template <class T, class Space>
void row_dots(const execution_context<Space>& ctx, batch_view<const T, Space> a, batch_view<const T, Space> b,
              std::span<double> out) {
  const char* where = "ddm::row_dots";
  ddm::require_same_shape(where, "b", b, a);
  ddm::require_row_count(where, "out", out, a);
  if (a.rows() != 0) row_ops<Space>::dots(ctx, a, b, out);
}

/// out[r] = ||a_r||_2^2, into host memory.
template <class T, class Space>
void row_squared_norms(const execution_context<Space>& ctx, batch_view<const T, Space> a, std::span<double> out) {
  row_dots(ctx, a, a, out);
}

}  // namespace ddm
