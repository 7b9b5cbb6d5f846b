#pragma once
// The closed-form rectified flow of Gaussian data x0 ~ N(m, s^2 I): the reference problem for
// order-of-convergence tests (the exact trajectory is known) and a smooth test field.
//
//   sigma(t)^2 = (1 - t)^2 s^2 + t^2
//   v(x, t)    = ((t - (1 - t) s^2) x - t m) / sigma(t)^2
//   x(t)       = (1 - t) m + sigma(t) / sigma(t_a) (x(t_a) - (1 - t_a) m)

#include <cmath>
#include <vector>

#include <ddm/core/batch.hpp>

namespace ddm::test {

struct gaussian_flow {
  std::vector<double> m;  // mean, one value per column
  double s = 0.5;         // standard deviation of the data

  [[nodiscard]] double sigma(double t) const { return std::sqrt((1 - t) * (1 - t) * s * s + t * t); }

  template <class T>
  void operator()(batch_view<const T> x, double t, batch_view<T> v) const {
    const double var = (1 - t) * (1 - t) * s * s + t * t;
    const double a = (t - (1 - t) * s * s) / var;
    const double b = t / var;
    for (index_t r = 0; r < x.rows(); ++r)
      for (index_t c = 0; c < x.cols(); ++c)
        v(r, c) = static_cast<T>(a * static_cast<double>(x(r, c)) - b * m[static_cast<std::size_t>(c)]);
  }

  // Exact jvp: J = a I.
  template <class T>
  void jvp(batch_view<const T> /*x*/, double t, batch_view<const T> u, batch_view<T> out) const {
    const double var = (1 - t) * (1 - t) * s * s + t * t;
    const double a = (t - (1 - t) * s * s) / var;
    for (index_t r = 0; r < u.rows(); ++r)
      for (index_t c = 0; c < u.cols(); ++c) out(r, c) = static_cast<T>(a * static_cast<double>(u(r, c)));
  }

  /// The exact state at t of the trajectory through x_a at t_a.
  template <class T>
  void exact(batch_view<const T> x_a, double t_a, double t, batch_view<T> out) const {
    const double ratio = sigma(t) / sigma(t_a);
    for (index_t r = 0; r < x_a.rows(); ++r)
      for (index_t c = 0; c < x_a.cols(); ++c) {
        const double mc = m[static_cast<std::size_t>(c)];
        out(r, c) = static_cast<T>((1 - t) * mc + ratio * (static_cast<double>(x_a(r, c)) - (1 - t_a) * mc));
      }
  }
};

/// Largest absolute difference between two host views of the same shape.
template <class A, class B>
[[nodiscard]] double max_abs_diff(batch_view<A> a, batch_view<B> b) {
  double worst = 0;
  for (index_t r = 0; r < a.rows(); ++r)
    for (index_t c = 0; c < a.cols(); ++c)
      worst = std::max(worst, std::abs(static_cast<double>(a(r, c)) - static_cast<double>(b(r, c))));
  return worst;
}

}  // namespace ddm::test
