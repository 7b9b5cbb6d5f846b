#pragma once
// v(x, t) = A x with a known (D, D) matrix A, the same for every row: the Jacobian is A
// everywhere, so every Jacobian estimator has a known answer. Exact jvp (A u) and vjp (A^T u).

#include <cmath>
#include <cstdint>
#include <vector>

#include <ddm/core/batch.hpp>
#include <ddm/core/rng.hpp>

namespace ddm::test {

struct linear_field {
  ddm::index_t d = 0;
  std::vector<double> a;  // row-major: a[i * d + j] = A(i, j)

  [[nodiscard]] double operator()(ddm::index_t i, ddm::index_t j) const { return a[static_cast<std::size_t>(i * d + j)]; }

  template <class T>
  void apply(ddm::batch_view<const T> x, ddm::batch_view<T> out, bool transpose) const {
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t i = 0; i < d; ++i) {
        double s = 0;
        for (ddm::index_t j = 0; j < d; ++j) s += (transpose ? (*this)(j, i) : (*this)(i, j)) * static_cast<double>(x(r, j));
        out(r, i) = static_cast<T>(s);
      }
  }
  template <class T>
  void operator()(ddm::batch_view<const T> x, double /*t*/, ddm::batch_view<T> v) const {
    apply(x, v, false);
  }
  template <class T>
  void jvp(ddm::batch_view<const T> /*x*/, double /*t*/, ddm::batch_view<const T> u, ddm::batch_view<T> out) const {
    apply(u, out, false);
  }
  template <class T>
  void vjp(ddm::batch_view<const T> /*x*/, double /*t*/, ddm::batch_view<const T> u, ddm::batch_view<T> out) const {
    apply(u, out, true);
  }

  [[nodiscard]] double frobenius_sq() const {
    double s = 0;
    for (double v : a) s += v * v;
    return s;
  }

  /// A with independent N(0, 1 / D) entries from Philox (seed).
  static linear_field random(ddm::index_t d, std::uint64_t seed) {
    linear_field f{d, std::vector<double>(static_cast<std::size_t>(d * d))};
    for (std::size_t n = 0; n < f.a.size(); ++n)
      f.a[n] = ddm::philox4x32::normal(seed, 0, n) / std::sqrt(static_cast<double>(d));
    return f;
  }
};

/// Only the velocity of a field: hides its jvp / vjp members (finite differences must be used).
template <class F>
struct values_only {
  const F* f;
  template <class T>
  void operator()(ddm::batch_view<const T> x, double t, ddm::batch_view<T> v) const {
    (*f)(x, t, v);
  }
};

/// The velocity and the vjp of a field, without its jvp (J u by finite differences, J^T u exact).
template <class F>
struct vjp_only {
  const F* f;
  template <class T>
  void operator()(ddm::batch_view<const T> x, double t, ddm::batch_view<T> v) const {
    (*f)(x, t, v);
  }
  template <class T>
  void vjp(ddm::batch_view<const T> x, double t, ddm::batch_view<const T> u, ddm::batch_view<T> out) const {
    f->vjp(x, t, u, out);
  }
};

}  // namespace ddm::test
