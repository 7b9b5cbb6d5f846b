// Samples a one-dimensional Gaussian flow and checks the endpoint against the exact solution.
#include <cmath>
#include <cstdio>

#include <ddm/ddm.hpp>

int main() {
  // Data N(m, s^2): v(x, t) = ((t - (1 - t) s^2) x - t m) / ((1 - t)^2 s^2 + t^2); x(0) = m + s x(1).
  const double m = 0.5;
  const double s = 0.25;
  auto field = [&](ddm::batch_view<const double> x, double t, ddm::batch_view<double> v) {
    const double var = (1 - t) * (1 - t) * s * s + t * t;
    for (ddm::index_t r = 0; r < x.rows(); ++r) v(r, 0) = ((t - (1 - t) * s * s) * x(r, 0) - t * m) / var;
  };
  ddm::batch<double> x(1, 1);
  x(0, 0) = 1.0;
  ddm::sample(field, x, ddm::schedules::uniform(200), ddm::heun{});
  const double error = std::abs(x(0, 0) - (m + s));
  std::printf("x(0) = %.6f, exact %.6f, error %.2e\n", x(0, 0), m + s, error);
  return error < 1e-4 ? 0 : 1;
}
