// Quickstart: write a velocity field, pick a schedule and an integrator, sample, observe.
//
// The field is the exact rectified flow of Gaussian data N(m, s^2 I), whose end point is known,
// so the program can print how close each integrator gets for the same number of evaluations.

#include <cmath>
#include <cstdio>

#include <ddm/ddm.hpp>

int main() {
  constexpr ddm::index_t batch_size = 256;
  constexpr ddm::index_t dim = 16;
  const double m = 0.7;
  const double s = 0.3;

  // v(x, t) = ((t - (1 - t) s^2) x - t m) / ((1 - t)^2 s^2 + t^2), applied to every row.
  auto field = [&](ddm::batch_view<const float> x, double t, ddm::batch_view<float> v) {
    const double var = (1 - t) * (1 - t) * s * s + t * t;
    const auto a = static_cast<float>((t - (1 - t) * s * s) / var);
    const auto b = static_cast<float>(t * m / var);
    for (ddm::index_t r = 0; r < x.rows(); ++r)
      for (ddm::index_t c = 0; c < x.cols(); ++c) v(r, c) = a * x(r, c) - b;
  };

  ddm::batch<float> noise(batch_size, dim);
  ddm::fill_normal(ddm::host_context{}, noise.view(), /*seed=*/2026);

  // Each sample ends at m + s * noise exactly; report the RMS error of each integrator.
  auto run = [&](const auto& integrator, long steps) {
    ddm::batch<float> x(batch_size, dim);
    ddm::copy(ddm::host_context{}, x.view(), noise);
    double path = 0;  // an observer: the mean distance travelled per sample
    auto odometer = [&](const ddm::step_event<float>& e) {
      double sq = 0;
      for (ddm::index_t c = 0; c < dim; ++c) sq += double(e.v(0, c)) * e.v(0, c);
      path += std::sqrt(sq) * (e.t - e.t_next);
    };
    const auto result = ddm::sample(field, x, ddm::schedules::uniform(steps), integrator, odometer);
    double err = 0;
    for (ddm::index_t r = 0; r < batch_size; ++r)
      for (ddm::index_t c = 0; c < dim; ++c) {
        const double e = x(r, c) - (m + s * noise(r, c));
        err += e * e;
      }
    std::printf("%-9s %3ld steps %4zu evaluations  RMS error %.2e  path length of sample 0: %.3f\n",
                ddm::name_of(integrator).c_str(), steps,
                result.field_evaluations, std::sqrt(err / double(batch_size * dim)), path);
  };

  std::printf("ddm %d.%d.%d quickstart: %td samples of Gaussian data in %td dimensions\n", DDM_VERSION_MAJOR,
              DDM_VERSION_MINOR, DDM_VERSION_PATCH, batch_size, dim);
  run(ddm::euler{}, 20);
  run(ddm::heun{}, 10);
  run(ddm::dpmpp_2m{}, 20);
  run(ddm::dpmpp_2s{}, 10);
  run(ddm::dpmpp_3m{}, 20);
  return 0;
}
