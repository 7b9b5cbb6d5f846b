#pragma once
// The state algebra: the few operations every integrator and diagnostic is written in.
//
//   lincomb(ctx, out, {c0, c1, ...}, x0, x1, ...)   out = sum_i c_i * x_i   (one fused pass)
//   copy(ctx, dst, src), fill(ctx, x, value)
//   row_dot(ctx, a, b, out)                         out(r) = <a_r, b_r>
//   row_norm(ctx, a, out)                           out(r) = ||a_r||_2
//   max_scaled_rms(ctx, err, x0, x1, atol, rtol)    max_r RMS_j(err / (atol + rtol max(|x0|, |x1|)))
//   all_finite(ctx, x)                              no NaN or infinity in x
//
// Each free function checks shapes, then forwards to algebra<Space>, which a memory space
// specializes (host here, CUDA in ddm/cuda/). Integrators call only these free functions, so a
// new backend needs no change to any integrator (the Boost.Odeint split of stepper and algebra,
// with one variadic operation instead of a family of fixed-arity ones).
//
// Aliasing: `out` may be the very same memory as any operand (in-place updates), but must not
// partially overlap one; partial overlap is rejected.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <utility>

#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/parallel.hpp"

namespace ddm {

template <class Space>
struct algebra {
  static_assert(sizeof(Space) == 0,
                "ddm: there is no state algebra for this memory space. For ddm::cuda_space, "
                "include <ddm/cuda.hpp> and link ddm::cuda.");
};

namespace detail {

// Two views either coincide exactly or do not overlap at all. Inlined: lincomb checks each of
// its operands on every call, and a call here cost more than the check for small batches.
template <class A, class B, class S>
[[nodiscard, gnu::always_inline]] inline bool alias_ok(const batch_view<A, S>& a, const batch_view<B, S>& b) noexcept {
  const auto* a0 = reinterpret_cast<const char*>(a.data());
  const auto* b0 = reinterpret_cast<const char*>(b.data());
  if (a0 == b0 && a.stride() == b.stride()) return true;
  if (a.empty() || b.empty()) return true;
  const auto* a1 = reinterpret_cast<const char*>(a.row(a.rows() - 1) + a.cols());
  const auto* b1 = reinterpret_cast<const char*>(b.row(b.rows() - 1) + b.cols());
  return a1 <= b0 || b1 <= a0;
}

// Out of line and cold, so that lincomb's per-call checks stay a few compares.
template <class T, class Space>
[[noreturn]] DDM_COLD void fail_lincomb_operand(const batch_view<const T, Space>& x, const batch_view<T, Space>& out,
                                                std::size_t i) {
  if (!same_shape(x, out))
    ddm::throw_error<shape_error>("ddm::lincomb: operand ", i, " has shape (", x.rows(), ", ", x.cols(),
                                  "), expected the output's shape (", out.rows(), ", ", out.cols(), ")");
  ddm::throw_error<argument_error>("ddm::lincomb: operand ", i,
                                   " partially overlaps the output, expected the same memory or disjoint memory");
}

}  // namespace detail

/// The host algebra: loops written so that the compiler vectorizes them, their rows split over
/// the context's threads (ddm/core/parallel.hpp). Every row (every element, for contiguous
/// lincomb and fill) is computed by one thread exactly as a single thread computes it, and the
/// reductions over rows are exact (a maximum, a conjunction), so any thread count gives the same
/// bits.
template <>
struct algebra<host_space> {
  template <class T, std::size_t N, std::size_t... I>
  static void lincomb(const host_context& ctx, batch_view<T> out, const std::array<T, N>& c,
                      const std::array<batch_view<const T>, N>& x, std::index_sequence<I...> /*seq*/) {
    if (out.is_contiguous() && (x[I].is_contiguous() && ...)) {
      // One flat array: split it into element ranges on whole cache lines.
      T* o = out.data();
      const std::array<const T*, N> p{x[I].data()...};
      for_row_ranges(
          ctx, out.rows() * out.cols(), index_t{N},
          [&](const row_range& range) {
            // Locals, so that the compiler need not reload them after every store through o.
            const std::array<T, N> k = c;
            const std::array<const T*, N> q = p;
            T* const w = o;
            DDM_PRAGMA_IVDEP
            for (index_t j = range.begin; j < range.end; ++j) w[j] = (... + (k[I] * q[I][j]));
          },
          index_t{64 / sizeof(T)});
      return;
    }
    const index_t cols = out.cols();
    for_row_ranges(ctx, out.rows(), cols * index_t{N}, [&](const row_range& range) {
      const std::array<T, N> k = c;
      for (index_t r = range.begin; r < range.end; ++r) {
        T* o = out.row(r);
        const std::array<const T*, N> p{x[I].row(r)...};
        DDM_PRAGMA_IVDEP
        for (index_t j = 0; j < cols; ++j) o[j] = (... + (k[I] * p[I][j]));
      }
    });
  }

  template <class T>
  static void fill(const host_context& ctx, batch_view<T> x, T value) {
    if (x.is_contiguous()) {
      T* p = x.data();
      for_row_ranges(
          ctx, x.rows() * x.cols(), 1,
          [&](const row_range& range) { std::fill(p + range.begin, p + range.end, value); },
          index_t{64 / sizeof(T)});
      return;
    }
    for_row_ranges(ctx, x.rows(), x.cols(), [&](const row_range& range) {
      for (index_t r = range.begin; r < range.end; ++r) std::fill_n(x.row(r), x.cols(), value);
    });
  }

  template <class T, class R>
  static void row_dot(const host_context& ctx, batch_view<const T> a, batch_view<const T> b, batch_view<R> out) {
    for_row_ranges(ctx, a.rows(), 2 * a.cols(), [&](const row_range& range) {
      for (index_t r = range.begin; r < range.end; ++r) {
        const T* pa = a.row(r);
        const T* pb = b.row(r);
        double s = 0;
        for (index_t j = 0; j < a.cols(); ++j) s += static_cast<double>(pa[j]) * static_cast<double>(pb[j]);
        out(r, 0) = static_cast<R>(s);
      }
    });
  }

  template <class T, class R>
  static void row_norm(const host_context& ctx, batch_view<const T> a, batch_view<R> out) {
    for_row_ranges(ctx, a.rows(), 2 * a.cols(), [&](const row_range& range) {
      for (index_t r = range.begin; r < range.end; ++r) {
        const T* pa = a.row(r);
        double s = 0;
        for (index_t j = 0; j < a.cols(); ++j) s += static_cast<double>(pa[j]) * static_cast<double>(pa[j]);
        out(r, 0) = static_cast<R>(std::sqrt(s));
      }
    });
  }

  template <class T>
  static double max_scaled_rms(const host_context& ctx, batch_view<const T> err, batch_view<const T> x0,
                               batch_view<const T> x1, double atol, double rtol) {
    // The maximum is exact, so partial maxima combine to the same value in any grouping; a NaN
    // row makes the result NaN wherever it lies (NaN never compares <= anything, and wins).
    auto worst_of = [](double a, double b) { return std::isnan(a) || b <= a ? a : b; };
    return reduce_row_ranges(
        ctx, err.rows(), 6 * err.cols(), 0.0,
        [&](const row_range& range) {
          double worst = 0;
          for (index_t r = range.begin; r < range.end; ++r) {
            const T* e = err.row(r);
            const T* a = x0.row(r);
            const T* b = x1.row(r);
            double s = 0;
            for (index_t j = 0; j < err.cols(); ++j) {
              const double scale = atol + rtol * std::max(std::abs(static_cast<double>(a[j])),
                                                          std::abs(static_cast<double>(b[j])));
              const double q = static_cast<double>(e[j]) / scale;
              s += q * q;
            }
            worst = worst_of(worst, std::sqrt(s / static_cast<double>(err.cols())));
          }
          return worst;
        },
        worst_of);
  }

  template <class T>
  static bool all_finite(const host_context& ctx, batch_view<const T> x) {
    return reduce_row_ranges(
        ctx, x.rows(), x.cols(), true,
        [&](const row_range& range) {
          for (index_t r = range.begin; r < range.end; ++r) {
            const T* p = x.row(r);
            // Accumulating x * 0 turns any NaN or infinity into NaN, and stays branch-free.
            T acc = 0;
            for (index_t j = 0; j < x.cols(); ++j) acc += p[j] * T(0);
            if (acc != acc) return false;
          }
          return true;
        },
        [](bool a, bool b) { return a && b; });
  }
};

/// out = sum_i coeffs[i] * xs[i], in one pass over memory. `out` may coincide with any operand.
/// Coefficients are given in double (time arithmetic is double) and applied in T.
template <class T, class Space, std::size_t N, class... Xs>
  requires(!std::is_const_v<T> && sizeof...(Xs) == N && (batch_like<Xs> && ...))
void lincomb(const execution_context<Space>& ctx, batch_view<T, Space> out, const double (&coeffs)[N],
             const Xs&... xs) {
  static_assert(N >= 1, "ddm::lincomb: at least one operand is required");
  static_assert((std::is_same_v<const_view_t<Xs>, batch_view<const T, Space>> && ...),
                "ddm::lincomb: every operand must be a batch or batch_view of the output's value type, "
                "in the output's memory space");
  const std::array<batch_view<const T, Space>, N> views{cview(xs)...};
  for (std::size_t i = 0; i < N; ++i)
    if (!same_shape(views[i], out) || !detail::alias_ok(views[i], out)) detail::fail_lincomb_operand(views[i], out, i);
  std::array<T, N> c{};
  for (std::size_t i = 0; i < N; ++i) c[i] = static_cast<T>(coeffs[i]);
  if (out.empty()) return;
  algebra<Space>::lincomb(ctx, out, c, views, std::make_index_sequence<N>{});
}

/// dst = src.
template <class T, class Space, class X>
  requires batch_like<X>
void copy(const execution_context<Space>& ctx, batch_view<T, Space> dst, const X& src) {
  lincomb(ctx, dst, {1.0}, src);
}

/// x = value everywhere.
template <class T, class Space>
void fill(const execution_context<Space>& ctx, batch_view<T, Space> x, std::type_identity_t<T> value) {
  if (!x.empty()) algebra<Space>::fill(ctx, x, value);
}

/// out(r, 0) = <a_r, b_r>, accumulated in double on the host. `out` has shape (rows, 1).
template <class A, class B, class R, class Space>
  requires(batch_like<A> && batch_like<B>)
void row_dot(const execution_context<Space>& ctx, const A& a, const B& b, batch_view<R, Space> out) {
  const auto va = cview(a);
  const auto vb = cview(b);
  static_assert(std::is_same_v<decltype(va), decltype(vb)> &&
                    std::is_same_v<typename decltype(va)::space, Space>,
                "ddm::row_dot: a and b must have the same value type and live in the context's space");
  ddm::require_same_shape("ddm::row_dot", "b", vb, va);
  ddm::require_shape("ddm::row_dot", "out", out, va.rows(), 1);
  if (va.rows() != 0) algebra<Space>::row_dot(ctx, va, vb, out);
}

/// out(r, 0) = ||a_r||_2. `out` has shape (rows, 1).
template <class A, class R, class Space>
  requires batch_like<A>
void row_norm(const execution_context<Space>& ctx, const A& a, batch_view<R, Space> out) {
  const auto va = cview(a);
  static_assert(std::is_same_v<typename decltype(va)::space, Space>,
                "ddm::row_norm: a must live in the context's space");
  ddm::require_shape("ddm::row_norm", "out", out, va.rows(), 1);
  if (va.rows() != 0) algebra<Space>::row_norm(ctx, va, out);
}

/// The error norm of embedded Runge-Kutta pairs: the largest per-row RMS of
/// err / (atol + rtol * max(|x0|, |x1|)). A result <= 1 means every row meets the tolerance.
template <class E, class X0, class X1, class Space>
  requires(batch_like<E> && batch_like<X0> && batch_like<X1>)
[[nodiscard]] double max_scaled_rms(const execution_context<Space>& ctx, const E& err, const X0& x0,
                                    const X1& x1, double atol, double rtol) {
  const auto ve = cview(err);
  const auto v0 = cview(x0);
  const auto v1 = cview(x1);
  static_assert(std::is_same_v<decltype(ve), decltype(v0)> && std::is_same_v<decltype(ve), decltype(v1)> &&
                    std::is_same_v<typename decltype(ve)::space, Space>,
                "ddm::max_scaled_rms: operands must share value type and the context's space");
  ddm::require_same_shape("ddm::max_scaled_rms", "x0", v0, ve);
  ddm::require_same_shape("ddm::max_scaled_rms", "x1", v1, ve);
  if (!(atol >= 0) || !(rtol >= 0) || !(atol + rtol > 0))
    throw argument_error(ddm::concat("ddm::max_scaled_rms: atol = ", atol, ", rtol = ", rtol,
                                        ", expected both >= 0 and not both 0"));
  if (ve.empty()) return 0.0;
  return algebra<Space>::max_scaled_rms(ctx, ve, v0, v1, atol, rtol);
}

/// True when x holds no NaN and no infinity.
template <class X, class Space>
  requires batch_like<X>
[[nodiscard]] bool all_finite(const execution_context<Space>& ctx, const X& x) {
  const auto v = cview(x);
  static_assert(std::is_same_v<typename decltype(v)::space, Space>,
                "ddm::all_finite: x must live in the context's space");
  if (v.empty()) return true;
  return algebra<Space>::all_finite(ctx, v);
}

/// A zero-initialized batch of the same shape as `like`, in the same space.
template <class T, class Space>
[[nodiscard]] batch<std::remove_const_t<T>, Space> make_batch_like(const execution_context<Space>& ctx,
                                                                   const batch_view<T, Space>& like) {
  return batch<std::remove_const_t<T>, Space>(ctx, like.rows(), like.cols());
}

}  // namespace ddm
