#pragma once
// Time schedules: the decreasing times t_0 > t_1 > ... > t_N at which a sampler evaluates.
//
// A time_schedule is validated when it is built: at least two points, every point finite and in
// [0, 1], strictly decreasing, and (when asked) ending exactly at 0. The factories in
// ddm::schedules build the common ones; any list can be given directly.

#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddm/core/error.hpp"
#include "ddm/flow/parameterization.hpp"

namespace ddm {

class time_schedule {
 public:
  enum class endpoint { any, zero };

  /// Validate and adopt `times`. With `end = endpoint::zero` the last time must be exactly 0.
  explicit time_schedule(std::vector<double> times, endpoint end = endpoint::any) : t_(std::move(times)) {
    validate_(end);
  }
  time_schedule(std::initializer_list<double> times, endpoint end = endpoint::any)
      : time_schedule(std::vector<double>(times), end) {}

  /// Number of steps (one less than the number of times).
  [[nodiscard]] std::size_t steps() const noexcept { return t_.size() - 1; }
  [[nodiscard]] std::size_t size() const noexcept { return t_.size(); }
  [[nodiscard]] double operator[](std::size_t i) const noexcept { return t_[i]; }
  [[nodiscard]] double front() const noexcept { return t_.front(); }
  [[nodiscard]] double back() const noexcept { return t_.back(); }
  [[nodiscard]] bool ends_at_zero() const noexcept { return t_.back() == 0.0; }
  [[nodiscard]] std::span<const double> times() const noexcept { return t_; }
  [[nodiscard]] auto begin() const noexcept { return t_.begin(); }
  [[nodiscard]] auto end() const noexcept { return t_.end(); }

 private:
  void validate_(endpoint end) const {
    const char* where = "ddm::time_schedule";
    if (t_.size() < 2)
      throw schedule_error(ddm::concat(where, ": ", t_.size(), " time(s) given, expected at least 2"));
    for (std::size_t i = 0; i < t_.size(); ++i) {
      if (!std::isfinite(t_[i]) || t_[i] < 0.0 || t_[i] > 1.0)
        throw schedule_error(ddm::concat(where, ": time ", i, " = ", t_[i], ", expected a value in [0, 1]"));
      if (i > 0 && !(t_[i] < t_[i - 1]))
        throw schedule_error(ddm::concat(where, ": time ", i, " = ", t_[i], " does not decrease from time ",
                                            i - 1, " = ", t_[i - 1], ", expected a strictly decreasing schedule"));
    }
    if (end == endpoint::zero && t_.back() != 0.0)
      throw schedule_error(ddm::concat(where, ": the last time is ", t_.back(), ", expected 0"));
  }

  std::vector<double> t_;
};

namespace schedules {

namespace detail {
inline void check_steps(const char* where, long steps) {
  if (steps < 1) ddm::fail_argument<schedule_error>(where, "steps", steps, ">= 1");
}
inline void check_range(const char* where, double t_max, double t_min, bool allow_one, bool allow_zero) {
  const bool max_ok = t_max > 0.0 && (allow_one ? t_max <= 1.0 : t_max < 1.0);
  if (!max_ok)
    ddm::fail_argument<schedule_error>(where, "t_max", t_max, allow_one ? "a value in (0, 1]" : "a value in (0, 1)");
  const bool min_ok = (allow_zero ? t_min >= 0.0 : t_min > 0.0) && t_min < t_max;
  if (!min_ok)
    ddm::fail_argument<schedule_error>(where, "t_min", t_min,
                                               allow_zero ? "0 <= t_min < t_max" : "0 < t_min < t_max");
}
}  // namespace detail

/// The SD3 / Flux time shift: s t / (1 + (s - 1) t). It translates lambda by -log s.
[[nodiscard]] inline double shift(double t, double s) {
  if (!(s > 0.0) || !std::isfinite(s)) ddm::fail_argument<schedule_error>("ddm::schedules::shift", "s", s, "a finite value > 0");
  return s * t / (1.0 + (s - 1.0) * t);
}

/// `steps` equal steps from t_max down to t_min (defaults: 1 to 0).
[[nodiscard]] inline time_schedule uniform(long steps, double t_max = 1.0, double t_min = 0.0) {
  detail::check_steps("ddm::schedules::uniform", steps);
  detail::check_range("ddm::schedules::uniform", t_max, t_min, true, true);
  std::vector<double> t(static_cast<std::size_t>(steps) + 1);
  for (long i = 0; i <= steps; ++i)
    t[static_cast<std::size_t>(i)] = t_max + (t_min - t_max) * static_cast<double>(i) / static_cast<double>(steps);
  t.back() = t_min;
  return time_schedule(std::move(t));
}

/// A uniform schedule passed through the SD3 shift with factor s (s > 1 spends more steps at high
/// noise). Endpoints 1 and 0 are kept exactly.
[[nodiscard]] inline time_schedule shifted(long steps, double s, double t_max = 1.0, double t_min = 0.0) {
  const time_schedule base = uniform(steps, t_max, t_min);
  std::vector<double> t(base.begin(), base.end());
  for (double& ti : t) ti = shift(ti, s);
  return time_schedule(std::move(t));
}

/// Karras et al. (2022) spacing applied to t: t_i = (t_max^(1/rho) + i/(n-1) (t_min^(1/rho) -
/// t_max^(1/rho)))^rho for i < n = steps (or steps + 1 points without the final zero), then a
/// final 0 when `end_at_zero` (as k-diffusion's get_sigmas_karras and stable-diffusion.cpp do for
/// flow models).
[[nodiscard]] inline time_schedule karras(long steps, double t_min = 1e-3, double t_max = 1.0, double rho = 7.0,
                                          bool end_at_zero = true) {
  const char* where = "ddm::schedules::karras";
  detail::check_steps(where, steps);
  detail::check_range(where, t_max, t_min, true, false);
  if (!(rho > 0.0) || !std::isfinite(rho)) ddm::fail_argument<schedule_error>(where, "rho", rho, "a finite value > 0");
  const long n = end_at_zero ? steps : steps + 1;  // points before the optional final zero
  if (n < 2) ddm::fail_argument<schedule_error>(where, "steps", steps, end_at_zero ? ">= 2 when ending at zero" : ">= 1");
  const double a = std::pow(t_max, 1.0 / rho);
  const double b = std::pow(t_min, 1.0 / rho);
  std::vector<double> t;
  t.reserve(static_cast<std::size_t>(steps) + 1);
  for (long i = 0; i < n; ++i) t.push_back(std::pow(a + (b - a) * static_cast<double>(i) / static_cast<double>(n - 1), rho));
  t.front() = t_max;
  t[static_cast<std::size_t>(n - 1)] = t_min;
  if (end_at_zero) t.push_back(0.0);
  return time_schedule(std::move(t));
}

/// Steps of equal size in lambda = log((1 - t) / t) between t_max and t_min (both inside (0, 1),
/// since lambda is infinite at the ends), then a final 0 when `end_at_zero`. This is the spacing
/// DPM-Solver calls 'logSNR'.
[[nodiscard]] inline time_schedule uniform_lambda(long steps, double t_max = 0.999, double t_min = 1e-3,
                                                  bool end_at_zero = true) {
  const char* where = "ddm::schedules::uniform_lambda";
  detail::check_steps(where, steps);
  detail::check_range(where, t_max, t_min, false, false);
  const long n = end_at_zero ? steps : steps + 1;
  if (n < 2) ddm::fail_argument<schedule_error>(where, "steps", steps, end_at_zero ? ">= 2 when ending at zero" : ">= 1");
  const double l0 = flow::lambda(t_max);
  const double l1 = flow::lambda(t_min);
  std::vector<double> t;
  t.reserve(static_cast<std::size_t>(steps) + 1);
  for (long i = 0; i < n; ++i)
    t.push_back(flow::t_from_lambda(l0 + (l1 - l0) * static_cast<double>(i) / static_cast<double>(n - 1)));
  t.front() = t_max;
  t[static_cast<std::size_t>(n - 1)] = t_min;
  if (end_at_zero) t.push_back(0.0);
  return time_schedule(std::move(t));
}

}  // namespace schedules
}  // namespace ddm
