#pragma once
// DPM-Solver++ (Lu et al. 2022) in data-prediction form, in rectified-flow variables.
//
// With D = x0_hat = x - t v, lambda = log((1 - t)/t) and h = lambda(t_next) - lambda(t), the
// exact solution of the flow ODE is x(t') = (t'/t) x(t) + t' * integral of D d(1/tau), and every
// update below is (t'/t) x + (1 - t'/t) D~ plus higher-order corrections, with D~ built from the
// current and past data predictions:
//
//   order 1 (= DDIM = Euler):  D~ = D_i
//   2M:  r = h_{i-1}/h,  D~ = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}
//   3M:  x' = (t'/t) x + (1 - t'/t) D_i + a phi2 D1 - a phi3 D2,  a = 1 - t',
//        phi1 = e^-h - 1, phi2 = phi1/h + 1, phi3 = phi2/h - 1/2,
//        D1 ~ h D' and D2 ~ h^2 D'' from divided differences of the last three D in lambda.
//
// A note on 3M. Integrating the Taylor expansion D(lambda_i + u) = D + u D' + u^2/2 D'' against
// the exponential weight gives the terms a phi2 (h D') - a phi3 (h^2 D''). The reference codes
// (dpm-solver's multistep_dpm_solver_third_update, k-diffusion's sample_dpmpp_3m_sde, diffusers)
// use D2 = (D1_0 - D1_1)/(r0 + r1), which is h^2 D''/2: the D'' term enters at half its Taylor
// value and the method is second order (measured in tests/integrators/convergence_test.cpp). ddm
// uses D2 = 2 (D1_0 - D1_1)/(r0 + r1) by default, which is third order; set
// `reference_d2 = true` to reproduce the reference codes' numbers instead.
//   2S:  midpoint t_m with lambda_m = (lambda_i + lambda_{i+1})/2,
//        u = (t_m/t) x + (1 - t_m/t) D_i,  x' = (t'/t) x + (1 - t'/t) D(u, t_m)
//
// Endpoints: lambda(1) = -inf, so a history point at t = 1 is never used for a correction (the
// step after it is first order, which is also the r -> inf limit of the 2M formula); a step into
// t = 0 (lambda = +inf) is first order, x' = D_i. Multistep methods warm up with orders 1, 2, 3.

#include <array>
#include <cmath>
#include <cstddef>
#include <utility>

#include "ddm/flow/parameterization.hpp"
#include "ddm/integrators/integrator.hpp"

namespace ddm {

namespace detail {

// phi_2(h) = (e^-h - 1)/h + 1 and phi_3(h) = phi_2(h)/h - 1/2, by series where the closed forms
// cancel catastrophically (|h| small).
struct dpm_phi {
  double phi2;
  double phi3;
};
[[nodiscard]] inline dpm_phi dpm_phis(double h) noexcept {
  if (std::abs(h) < 1e-2) {
    // e^-h = sum (-h)^k/k!  =>  phi2 = h/2 - h^2/6 + h^3/24 - h^4/120,  phi3 = -h/6 + h^2/24 - h^3/120
    const double h2 = h * h;
    return {h / 2 - h2 / 6 + h2 * h / 24 - h2 * h2 / 120, -h / 6 + h2 / 24 - h2 * h / 120 + h2 * h2 / 720};
  }
  const double phi1 = std::expm1(-h);
  const double phi2 = phi1 / h + 1.0;
  return {phi2, phi2 / h - 0.5};
}

}  // namespace detail

/// DPM-Solver++ multistep of order 1, 2 (2M) or 3 (3M).
template <int Order>
struct dpmpp_multistep {
  static_assert(Order >= 1 && Order <= 3, "ddm::dpmpp_multistep: order must be 1, 2 or 3");
  static constexpr int order = Order;
  static constexpr int evaluations_per_step = 1;
  static constexpr const char* name() noexcept { return Order == 1 ? "dpm++1" : (Order == 2 ? "dpm++2m" : "dpm++3m"); }

  /// 3M only: use the reference codes' D2 (half the Taylor value; second order). See above.
  bool reference_d2 = false;

  /// Same options, same steppers: what lets ddm::sample() reuse a kept stepper.
  friend bool operator==(const dpmpp_multistep&, const dpmpp_multistep&) = default;

  [[nodiscard]] std::size_t evaluations(const time_schedule& s) const noexcept { return s.steps(); }

  template <class T, class Space>
  class stepper {
   public:
    stepper(const execution_context<Space>& ctx, index_t rows, index_t cols, bool reference_d2 = false)
        : ctx_(ctx),
          v_(ctx, rows, cols),
          d_{make_(ctx, rows, cols, std::make_index_sequence<Order>{})},
          d2_scale_(reference_d2 ? 1.0 : 2.0) {}

    template <class F>
    void step(F& f, batch_view<T, Space> x, double t, double t_next) {
      detail::check_stepper_shape("ddm::dpmpp_multistep::step", x, v_.rows(), v_.cols());
      detail::check_step_times("ddm::dpmpp_multistep::step", t, t_next);
      f(x.as_const(), t, v_.view());
      // The history is a ring: slot 0 receives D_i after rotating the older ones back.
      rotate_();
      lincomb(ctx_, d_[0].view(), {1.0, -t}, x, v_);
      const double l = flow::lambda(t);
      const double l_next = flow::lambda(t_next);
      const double a = t_next / t;        // sigma ratio t'/t
      const double b = (t - t_next) / t;  // 1 - t'/t, without cancellation
      const int k = std::min(Order, usable_ + 1);
      if (t_next == 0.0 || k == 1) {
        lincomb(ctx_, x, {a, b}, x, d_[0]);
      } else if (k == 2) {
        const double h = l_next - l;
        const double r = (l - lambda_[0]) / h;
        const double c = 1.0 / (2.0 * r);
        if constexpr (Order >= 2) lincomb(ctx_, x, {a, b * (1.0 + c), -b * c}, x, d_[0], d_[1]);
      } else {
        if constexpr (Order >= 3) {
          const double h = l_next - l;
          const double r0 = (l - lambda_[0]) / h;
          const double r1 = (lambda_[0] - lambda_[1]) / h;
          const auto [phi2, phi3] = detail::dpm_phis(h);
          const double alpha = 1.0 - t_next;
          // D1_0 = (D_i - D_{i-1})/r0, D1_1 = (D_{i-1} - D_{i-2})/r1,
          // D1 = D1_0 + r0/(r0 + r1) (D1_0 - D1_1) ~ h D',  D2 = 2 (D1_0 - D1_1)/(r0 + r1) ~ h^2 D
          const std::array<double, 3> diff{1.0 / r0, -1.0 / r0 - 1.0 / r1, 1.0 / r1};  // D1_0 - D1_1
          const std::array<double, 3> d10{1.0 / r0, -1.0 / r0, 0.0};
          const double q = r0 / (r0 + r1);
          std::array<double, 3> coef{};
          for (std::size_t j = 0; j < 3; ++j) {
            const double d1 = d10[j] + q * diff[j];
            const double d2 = d2_scale_ * diff[j] / (r0 + r1);
            coef[j] = alpha * phi2 * d1 - alpha * phi3 * d2;
          }
          coef[0] += b;
          lincomb(ctx_, x, {a, coef[0], coef[1], coef[2]}, x, d_[0], d_[1], d_[2]);
        }
      }
      // Remember lambda_i for the next step's ratios.
      for (int j = Order - 1; j > 0; --j) lambda_[static_cast<std::size_t>(j)] = lambda_[static_cast<std::size_t>(j - 1)];
      lambda_[0] = l;
      // A past point is usable when it is on this trajectory and its lambda is finite (a point
      // at t = 1 has lambda = -inf and carries no slope information).
      usable_ = std::isfinite(l) ? std::min(usable_ + 1, Order - 1) : 0;
    }

    [[nodiscard]] batch_view<const T, Space> velocity() const noexcept { return v_.cview(); }

    /// Forget the history (the next step is first order).
    void reset() noexcept { usable_ = 0; }

   private:
    template <std::size_t... I>
    static std::array<batch<T, Space>, Order> make_(const execution_context<Space>& ctx, index_t rows, index_t cols,
                                                     std::index_sequence<I...> /*seq*/) {
      return {((void)I, batch<T, Space>(ctx, rows, cols))...};
    }
    void rotate_() noexcept {
      for (int j = Order - 1; j > 0; --j) std::swap(d_[static_cast<std::size_t>(j)], d_[static_cast<std::size_t>(j - 1)]);
    }

    execution_context<Space> ctx_;
    batch<T, Space> v_;
    std::array<batch<T, Space>, Order> d_;  // d_[0] = D_i, d_[1] = D_{i-1}, ...
    std::array<double, Order> lambda_{};    // lambda_[0] = lambda_{i-1}, ... (after rotation)
    int usable_ = 0;                        // how many past D's (d_[1..]) may be used
    double d2_scale_;                       // 2 (Taylor) or 1 (reference codes)
  };

  template <class T, class Space>
  [[nodiscard]] stepper<T, Space> make_stepper(const execution_context<Space>& ctx, index_t rows, index_t cols) const {
    return stepper<T, Space>(ctx, rows, cols, reference_d2);
  }
};

/// First-order DPM-Solver++ (identical to DDIM and Euler in exact arithmetic).
using dpmpp_1 = dpmpp_multistep<1>;
/// DPM-Solver++(2M), the "midpoint" variant, with lambda = log((1 - t)/t).
using dpmpp_2m = dpmpp_multistep<2>;
/// DPM-Solver++(3M) with warm-up orders 1, 2, 3.
using dpmpp_3m = dpmpp_multistep<3>;

/// DPM-Solver++(2S): the singlestep second-order method with its intermediate point at the
/// midpoint in lambda. Two evaluations per step, one on a step from t = 1 (the lambda midpoint is
/// t = 1 itself; the step is first order) and one on a step into t = 0 (x' = D_i).
struct dpmpp_2s {
  static constexpr int order = 2;
  static constexpr int evaluations_per_step = 2;
  static constexpr const char* name() noexcept { return "dpm++2s"; }

  [[nodiscard]] std::size_t evaluations(const time_schedule& s) const noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i + 1 < s.size(); ++i) n += (s[i] == 1.0 || s[i + 1] == 0.0) ? 1 : 2;
    return n;
  }

  template <class T, class Space>
  class stepper {
   public:
    stepper(const execution_context<Space>& ctx, index_t rows, index_t cols)
        : ctx_(ctx), v_(ctx, rows, cols), vm_(ctx, rows, cols), d_(ctx, rows, cols), u_(ctx, rows, cols) {}

    template <class F>
    void step(F& f, batch_view<T, Space> x, double t, double t_next) {
      detail::check_stepper_shape("ddm::dpmpp_2s::step", x, v_.rows(), v_.cols());
      detail::check_step_times("ddm::dpmpp_2s::step", t, t_next);
      f(x.as_const(), t, v_.view());
      const double a = t_next / t;
      const double b = (t - t_next) / t;
      lincomb(ctx_, d_.view(), {1.0, -t}, x, v_);
      if (t_next == 0.0 || t == 1.0) {
        lincomb(ctx_, x, {a, b}, x, d_);
        return;
      }
      const double t_m = flow::t_from_lambda(0.5 * (flow::lambda(t) + flow::lambda(t_next)));
      lincomb(ctx_, u_.view(), {t_m / t, (t - t_m) / t}, x, d_);
      f(u_.cview(), t_m, vm_.view());
      // D(u, t_m) = u - t_m v_m, folded into the update.
      lincomb(ctx_, x, {a, b, -b * t_m}, x, u_, vm_);
    }

    [[nodiscard]] batch_view<const T, Space> velocity() const noexcept { return v_.cview(); }

    /// Nothing carries over from one step to the next; here for ddm::sampler.
    void reset() noexcept {}

   private:
    execution_context<Space> ctx_;
    batch<T, Space> v_, vm_, d_, u_;
  };

  template <class T, class Space>
  [[nodiscard]] stepper<T, Space> make_stepper(const execution_context<Space>& ctx, index_t rows, index_t cols) const {
    return stepper<T, Space>(ctx, rows, cols);
  }
};

}  // namespace ddm
