#pragma once
// Adaptive embedded Runge-Kutta pairs with error control.
//
// Between two consecutive schedule times the stepper takes as many internal steps as its error
// control needs: with y the propagated (higher-order) solution and e = dt sum_j (b_j - bhat_j) k_j
// the embedded error estimate, a step is accepted when
//
//     E = max over rows of RMS_j( e_j / (atol + rtol max(|x_j|, |y_j|)) ) <= 1,
//
// and the next step size is dt * clamp(safety * E^(-1/(q+1)), 0.2, 5) (q the lower order; the
// factor is capped at 1 after a rejection). One time per batch: the worst row sets the step.
// First-same-as-last pairs reuse their last stage as the next step's first. The stepper works on
// its own copy of the state and writes x once, when it reaches t_next.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <utility>

#include "ddm/integrators/integrator.hpp"

namespace ddm {

/// Bogacki-Shampine 3(2): 4 stages, FSAL, propagates the third-order solution.
struct bogacki_shampine_32 {
  static constexpr int stages = 4;
  static constexpr int order = 3;
  static constexpr int embedded_order = 2;
  static constexpr bool fsal = true;
  static constexpr const char* name() noexcept { return "bs32"; }
  static constexpr std::array<double, stages> c{0.0, 0.5, 0.75, 1.0};
  static constexpr std::array<std::array<double, stages>, stages> a{{
      {0, 0, 0, 0},
      {0.5, 0, 0, 0},
      {0, 0.75, 0, 0},
      {2.0 / 9, 1.0 / 3, 4.0 / 9, 0},
  }};
  static constexpr std::array<double, stages> b{2.0 / 9, 1.0 / 3, 4.0 / 9, 0};
  static constexpr std::array<double, stages> b_hat{7.0 / 24, 0.25, 1.0 / 3, 0.125};
};

/// Dormand-Prince 5(4): 7 stages, FSAL, propagates the fifth-order solution.
struct dormand_prince_54 {
  static constexpr int stages = 7;
  static constexpr int order = 5;
  static constexpr int embedded_order = 4;
  static constexpr bool fsal = true;
  static constexpr const char* name() noexcept { return "dopri5"; }
  static constexpr std::array<double, stages> c{0.0, 0.2, 0.3, 0.8, 8.0 / 9, 1.0, 1.0};
  static constexpr std::array<std::array<double, stages>, stages> a{{
      {0, 0, 0, 0, 0, 0, 0},
      {0.2, 0, 0, 0, 0, 0, 0},
      {3.0 / 40, 9.0 / 40, 0, 0, 0, 0, 0},
      {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0, 0, 0},
      {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0, 0, 0},
      {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656, 0, 0},
      {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0},
  }};
  static constexpr std::array<double, stages> b{35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0};
  static constexpr std::array<double, stages> b_hat{5179.0 / 57600,    0,           7571.0 / 16695, 393.0 / 640,
                                                    -92097.0 / 339200, 187.0 / 2100, 1.0 / 40};
};

/// Counts of an adaptive integration.
struct adaptive_stats {
  std::size_t accepted = 0;
  std::size_t rejected = 0;
  std::size_t evaluations = 0;
};

/// An adaptive embedded Runge-Kutta integrator over `Tableau` (default Bogacki-Shampine 3(2)).
template <class Tableau = bogacki_shampine_32>
struct adaptive_rk {
  static constexpr int order = Tableau::order;
  static constexpr const char* name() noexcept { return Tableau::name(); }

  double rtol = 1e-3;
  double atol = 1e-4;
  double safety = 0.9;
  /// First internal step size (0: chosen from the scaled sizes of x and v).
  double initial_step = 0.0;
  /// Smallest internal step before the integration gives up with an error.
  double min_step = 1e-10;
  /// Most internal steps per schedule step before giving up.
  std::size_t max_steps = 100000;

  /// Same options, same steppers: what lets ddm::sample() reuse a kept stepper.
  friend bool operator==(const adaptive_rk&, const adaptive_rk&) = default;

  void validate() const {
    const char* where = "ddm::adaptive_rk";
    if (!(rtol >= 0) || !(atol >= 0) || !(rtol + atol > 0))
      throw argument_error(ddm::concat(where, ": rtol = ", rtol, ", atol = ", atol, ", expected both >= 0 and not both 0"));
    if (!(safety > 0 && safety <= 1)) ddm::fail_argument(where, "safety", safety, "a value in (0, 1]");
    if (!(initial_step >= 0 && initial_step <= 1)) ddm::fail_argument(where, "initial_step", initial_step, "a value in [0, 1]");
    if (!(min_step > 0 && min_step < 1)) ddm::fail_argument(where, "min_step", min_step, "a value in (0, 1)");
    if (max_steps == 0) ddm::fail_argument(where, "max_steps", max_steps, ">= 1");
  }

  template <class T, class Space>
  class stepper {
    static constexpr int S = Tableau::stages;

   public:
    stepper(const adaptive_rk& opt, const execution_context<Space>& ctx, index_t rows, index_t cols)
        : opt_(opt),
          ctx_(ctx),
          k_{make_(ctx, rows, cols, std::make_index_sequence<S>{})},
          y_(ctx, rows, cols),
          y_new_(ctx, rows, cols),
          err_(ctx, rows, cols),
          stage_(ctx, rows, cols),
          v_(ctx, rows, cols) {
      opt_.validate();
    }

    template <class F>
    void step(F& f, batch_view<T, Space> x, double t, double t_next) {
      detail::check_stepper_shape("ddm::adaptive_rk::step", x, y_.rows(), y_.cols());
      copy(ctx_, y_.view(), x);
      evaluate_(f, y_.cview(), t, k_[0].view());
      copy(ctx_, v_.view(), k_[0]);
      const double span = t_next - t;
      const double dir = span < 0 ? -1.0 : 1.0;
      if (h_ == 0.0) h_ = opt_.initial_step > 0 ? opt_.initial_step : initial_step_();
      double tc = t;
      std::size_t taken = 0;
      while (dir * (t_next - tc) > 0) {
        if (++taken > opt_.max_steps)
          throw argument_error(ddm::concat("ddm::adaptive_rk::step: more than max_steps = ", opt_.max_steps,
                                              " internal steps between t = ", t, " and t_next = ", t_next,
                                              ", expected the error control to converge (raise rtol/atol or max_steps)"));
        double dt = dir * std::min(h_, std::abs(t_next - tc));
        const bool last = std::abs(t_next - tc) <= h_;
        if (last) dt = t_next - tc;
        stages_(f, tc, dt, std::make_index_sequence<S - 1>{});
        const double e = max_scaled_rms(ctx_, err_.cview(), y_.cview(), y_new_.cview(), opt_.atol, opt_.rtol);
        const double q = static_cast<double>(std::min(Tableau::order, Tableau::embedded_order));
        if (e <= 1.0) {
          ++stats_.accepted;
          tc = last ? t_next : tc + dt;
          std::swap(y_, y_new_);
          if constexpr (Tableau::fsal) {
            std::swap(k_[0], k_[S - 1]);
          } else if (dir * (t_next - tc) > 0) {
            evaluate_(f, y_.cview(), tc, k_[0].view());
          }
          const double grow = e == 0.0 ? 5.0 : std::clamp(opt_.safety * std::pow(e, -1.0 / (q + 1.0)), 0.2, 5.0);
          // Do not let a short final step (clipped to t_next) shrink the next interval's step.
          if (!last) h_ = std::abs(dt) * grow;
          else h_ = std::max(h_, std::abs(dt) * grow);
        } else {
          ++stats_.rejected;
          const double shrink = std::isfinite(e) ? std::clamp(opt_.safety * std::pow(e, -1.0 / (q + 1.0)), 0.2, 1.0) : 0.2;
          h_ = std::abs(dt) * shrink;
          if (h_ < opt_.min_step)
            throw argument_error(ddm::concat("ddm::adaptive_rk::step: step size ", h_, " at t = ", tc,
                                                " fell below min_step = ", opt_.min_step,
                                                ", expected the field to be smooth enough for rtol = ", opt_.rtol,
                                                " and atol = ", opt_.atol));
        }
      }
      copy(ctx_, x, y_);
    }

    [[nodiscard]] batch_view<const T, Space> velocity() const noexcept { return v_.cview(); }
    [[nodiscard]] const adaptive_stats& stats() const noexcept { return stats_; }

    /// Start afresh: forget the step size (the next step estimates it again) and the counts.
    void reset() noexcept {
      h_ = 0.0;
      stats_ = {};
    }

   private:
    template <std::size_t... I>
    static std::array<batch<T, Space>, S> make_(const execution_context<Space>& ctx, index_t rows, index_t cols,
                                                 std::index_sequence<I...> /*seq*/) {
      return {((void)I, batch<T, Space>(ctx, rows, cols))...};
    }

    template <class F>
    void evaluate_(F& f, batch_view<const T, Space> x, double t, batch_view<T, Space> out) {
      f(x, t, out);
      ++stats_.evaluations;
    }

    // Stage i (1-based) input: y + dt sum_{j<i} a_ij k_j, then k_i = f(stage, t + c_i dt).
    template <class F, std::size_t... I>
    void stages_(F& f, double tc, double dt, std::index_sequence<I...> /*seq*/) {
      (one_stage_<I + 1>(f, tc, dt, std::make_index_sequence<I + 1>{}), ...);
      combine_(dt, std::make_index_sequence<S>{});
    }

    template <std::size_t I, class F, std::size_t... J>
    void one_stage_(F& f, double tc, double dt, std::index_sequence<J...> /*seq*/) {
      lincomb(ctx_, stage_.view(), {1.0, (dt * Tableau::a[I][J])...}, y_, k_[J]...);
      evaluate_(f, stage_.cview(), tc + Tableau::c[I] * dt, k_[I].view());
    }

    template <std::size_t... J>
    void combine_(double dt, std::index_sequence<J...> /*seq*/) {
      lincomb(ctx_, y_new_.view(), {1.0, (dt * Tableau::b[J])...}, y_, k_[J]...);
      lincomb(ctx_, err_.view(), {(dt * (Tableau::b[J] - Tableau::b_hat[J]))...}, k_[J]...);
    }

    // Hairer's first guess 0.01 * ||x|| / ||v|| in the scaled norm, clipped to [min_step, 0.1].
    [[nodiscard]] double initial_step_() const {
      const double d0 = max_scaled_rms(ctx_, y_.cview(), y_.cview(), y_.cview(), opt_.atol, opt_.rtol);
      const double d1 = max_scaled_rms(ctx_, k_[0].cview(), y_.cview(), y_.cview(), opt_.atol, opt_.rtol);
      const double h = (d0 < 1e-5 || d1 < 1e-5) ? 1e-3 : 0.01 * d0 / d1;
      return std::clamp(h, opt_.min_step * 10, 0.1);
    }

    adaptive_rk opt_;
    execution_context<Space> ctx_;
    std::array<batch<T, Space>, S> k_;
    batch<T, Space> y_, y_new_, err_, stage_, v_;
    adaptive_stats stats_{};
    double h_ = 0.0;
  };

  template <class T, class Space>
  [[nodiscard]] stepper<T, Space> make_stepper(const execution_context<Space>& ctx, index_t rows, index_t cols) const {
    return stepper<T, Space>(*this, ctx, rows, cols);
  }
};

/// The default adaptive pair: Bogacki-Shampine 3(2).
using adaptive_bs32 = adaptive_rk<bogacki_shampine_32>;
/// Dormand-Prince 5(4).
using adaptive_dopri5 = adaptive_rk<dormand_prince_54>;

}  // namespace ddm
