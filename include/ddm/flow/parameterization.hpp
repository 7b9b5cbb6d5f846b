#pragma once
// Rectified-flow variables and conversions between model parameterizations.
//
//   x_t = (1 - t) x0 + t eps,   v = eps - x0,   sampling runs from t = 1 (noise) to t = 0 (data)
//   x0_hat  = x - t v                 (data prediction)
//   eps_hat = x + (1 - t) v           (noise prediction)
//   lambda(t) = log((1 - t) / t)      (half log-SNR; -inf at t = 1, +inf at t = 0)
//
// Experts that predict eps or x0 are turned into velocity fields here, never inside an
// integrator; heterogeneous DDMs mix such experts with flow-matching ones.

#include <cmath>
#include <functional>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>
#include <algorithm>
#include <concepts>
#include <cstdint>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/field.hpp"

namespace ddm::flow {

/// lambda(t) = log((1 - t) / t), written as log1p(-t) - log(t) so that both ends keep full
/// relative precision: lambda(1) = -inf, lambda(0) = +inf.
[[nodiscard]] inline double lambda(double t) noexcept { return std::log1p(-t) - std::log(t); }

/// The inverse of lambda: t = 1 / (1 + e^lambda) = sigmoid(-lambda), stable for large |lambda|.
[[nodiscard]] inline double t_from_lambda(double l) noexcept {
  if (l >= 0) {
    const double e = std::exp(-l);
    return e / (1.0 + e);
  }
  return 1.0 / (1.0 + std::exp(l));
}

/// x0_hat = x - t v (row by row, any space with an algebra).
template <class T, class Space>
void x0_hat(const execution_context<Space>& ctx, batch_view<const T, Space> x, batch_view<const T, Space> v,
            double t, batch_view<T, Space> out) {
  lincomb(ctx, out, {1.0, -t}, x, v);
}

/// eps_hat = x + (1 - t) v.
template <class T, class Space>
void eps_hat(const execution_context<Space>& ctx, batch_view<const T, Space> x, batch_view<const T, Space> v,
             double t, batch_view<T, Space> out) {
  lincomb(ctx, out, {1.0, 1.0 - t}, x, v);
}

namespace detail {
inline void check_guard(const char* where, double guard) {
  if (!(guard > 0.0 && guard < 0.5))
    ddm::fail_argument(where, "guard", guard, "a value in (0, 0.5)");
}

// The conversions of a prediction, written into v by the model, into the velocity in place.
// v holds eps_hat on entry and (eps_hat - x) / (1 - t) on return, the denominator kept >= guard.
struct eps_to_velocity {
  static constexpr const char* where = "ddm::flow::eps_velocity";
  template <class T, class Space>
  static void apply(const execution_context<Space>& ctx, batch_view<const T, Space> x, double t, double guard,
                    batch_view<T, Space> v) {
    const double inv = 1.0 / std::max(1.0 - t, guard);
    lincomb(ctx, v, {inv, -inv}, v, x);
  }
};

// v holds x0_hat on entry and (x - x0_hat) / t on return, the denominator kept >= guard.
struct x0_to_velocity {
  static constexpr const char* where = "ddm::flow::x0_velocity";
  template <class T, class Space>
  static void apply(const execution_context<Space>& ctx, batch_view<const T, Space> x, double t, double guard,
                    batch_view<T, Space> v) {
    const double inv = 1.0 / std::max(t, guard);
    lincomb(ctx, v, {inv, -inv}, x, v);
  }
};

// A model whose prediction To turns into the velocity: eps_velocity and x0_velocity are this
// class with their conversion. The model's output goes into v, then is converted in place.
template <class F, class Space, class To>
class prediction_velocity {
 public:
  prediction_velocity(F f, double guard, execution_context<Space> ctx)
      : f_(std::move(f)), guard_(guard), ctx_(ctx) {
    check_guard(To::where, guard);
  }

  template <class T>
    requires velocity_field<F, T, Space>
  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> v) {
    f_(x, t, v);
    To::apply(ctx_, x, t, guard_, v);
  }

  /// The same for a model that takes per-sample conditioning: the original row indices of a
  /// sub-batch (a row_index_view, as a routed field passes them) go to the model unchanged.
  template <class T>
    requires std::invocable<F&, batch_view<const T, Space>, double, batch_view<T, Space>,
                            batch_view<const std::int32_t, Space>>
  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> v,
                  batch_view<const std::int32_t, Space> rows) {
    f_(x, t, v, rows);
    To::apply(ctx_, x, t, guard_, v);
  }

  [[nodiscard]] F& model() noexcept { return f_; }

 private:
  F f_;
  double guard_;
  [[no_unique_address]] execution_context<Space> ctx_;
};
}  // namespace detail

/// An eps-prediction model in rectified-flow variables as a velocity field:
/// v = (eps_hat - x) / (1 - t). The division is singular at t = 1, where x = eps carries no
/// information about x0; the denominator is kept >= `guard` (default 1e-4). A model that takes
/// per-sample conditioning is also called with the row indices of a sub-batch, unchanged.
template <class F, class Space = host_space>
class eps_velocity : public detail::prediction_velocity<F, Space, detail::eps_to_velocity> {
 public:
  explicit eps_velocity(F f, double guard = 1e-4, execution_context<Space> ctx = {})
      : detail::prediction_velocity<F, Space, detail::eps_to_velocity>(std::move(f), guard, ctx) {}
};

/// An x0-prediction model as a velocity field: v = (x - x0_hat) / t, with t kept >= `guard`.
/// Row indices pass through to a conditioned model as for eps_velocity.
template <class F, class Space = host_space>
class x0_velocity : public detail::prediction_velocity<F, Space, detail::x0_to_velocity> {
 public:
  explicit x0_velocity(F f, double guard = 1e-4, execution_context<Space> ctx = {})
      : detail::prediction_velocity<F, Space, detail::x0_to_velocity>(std::move(f), guard, ctx) {}
};

/// A DDPM (variance-preserving) eps-prediction expert as a rectified-flow velocity field.
///
/// A VP model expects x_vp = a x0 + s eps with a^2 + s^2 = 1 and its own timestep. The RF state
/// x_t = (1 - t) x0 + t eps is the VP state scaled by c = sqrt((1 - t)^2 + t^2), at
/// alpha_bar = ((1 - t) / c)^2. `timestep_of(alpha_bar)` maps that to the model's time input (for
/// a 1000-step DDPM: the fractional index whose cumulative product of alphas is alpha_bar). The
/// model is called as model(x_vp, timestep, eps_hat), and v = (eps_hat - x) / (1 - t).
template <class T, class F, class TimestepOf, class Space = host_space>
class vp_eps_velocity {
 public:
  vp_eps_velocity(F f, TimestepOf timestep_of, double guard = 1e-4, execution_context<Space> ctx = {})
      : f_(std::move(f)), timestep_of_(std::move(timestep_of)), guard_(guard), ctx_(ctx) {
    detail::check_guard("ddm::flow::vp_eps_velocity", guard);
  }

  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> v)
    requires velocity_field<F, T, Space>
  {
    apply_(x, t, v, [&](batch_view<const T, Space> xv, double step) { f_(xv, step, v); });
  }

  /// With per-sample conditioning: row indices pass through to the model.
  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> v,
                  batch_view<const std::int32_t, Space> rows)
    requires std::invocable<F&, batch_view<const T, Space>, double, batch_view<T, Space>,
                            batch_view<const std::int32_t, Space>>
  {
    apply_(x, t, v, [&](batch_view<const T, Space> xv, double step) { f_(xv, step, v, rows); });
  }

 private:
  template <class Call>
  void apply_(batch_view<const T, Space> x, double t, batch_view<T, Space> v, Call&& call) {
    const double c = std::hypot(1.0 - t, t);
    const double alpha_bar = ((1.0 - t) / c) * ((1.0 - t) / c);
    if (scratch_.rows() != x.rows() || scratch_.cols() != x.cols())
      scratch_ = batch<T, Space>(ctx_, x.rows(), x.cols());
    lincomb(ctx_, scratch_.view(), {1.0 / c}, x);
    call(scratch_.cview(), static_cast<double>(timestep_of_(alpha_bar)));  // v <- eps_hat
    detail::eps_to_velocity::apply(ctx_, x, t, guard_, v);
  }

  F f_;
  TimestepOf timestep_of_;
  double guard_;
  [[no_unique_address]] execution_context<Space> ctx_;
  batch<T, Space> scratch_;
};

/// vp_eps_velocity for value type T, deducing the model and the timestep map.
template <class T, class Space = host_space, class F, class TimestepOf>
[[nodiscard]] auto make_vp_eps_velocity(F f, TimestepOf timestep_of, double guard = 1e-4,
                                        execution_context<Space> ctx = {}) {
  return vp_eps_velocity<T, F, TimestepOf, Space>(std::move(f), std::move(timestep_of), guard, ctx);
}

/// For a DDPM with betas linear in [beta_start, beta_end] over `steps` steps (the DiT / LDM
/// default: 1e-4, 0.02, 1000): the fractional timestep whose alpha_bar matches, by bisection on
/// log alpha_bar (interpolated linearly between integer steps).
class linear_beta_timesteps {
 public:
  explicit linear_beta_timesteps(int steps = 1000, double beta_start = 1e-4, double beta_end = 0.02)
      : log_alpha_bar_(static_cast<std::size_t>(steps)) {
    if (steps < 2) ddm::fail_argument("ddm::flow::linear_beta_timesteps", "steps", steps, ">= 2");
    if (!(beta_start > 0 && beta_end < 1 && beta_start <= beta_end))
      ddm::fail_argument("ddm::flow::linear_beta_timesteps", "beta_start", beta_start,
                                 "0 < beta_start <= beta_end < 1");
    double acc = 0;
    for (int i = 0; i < steps; ++i) {
      const double beta = beta_start + (beta_end - beta_start) * i / (steps - 1);
      acc += std::log1p(-beta);
      log_alpha_bar_[static_cast<std::size_t>(i)] = acc;
    }
  }

  /// The (fractional) timestep in [0, steps - 1] whose alpha_bar is closest to `alpha_bar`.
  [[nodiscard]] double operator()(double alpha_bar) const noexcept {
    const double target = std::log(alpha_bar);
    const auto& l = log_alpha_bar_;  // decreasing in the index
    if (target >= l.front()) return 0.0;
    if (target <= l.back()) return static_cast<double>(l.size() - 1);
    std::size_t lo = 0;
    std::size_t hi = l.size() - 1;
    while (hi - lo > 1) {
      const std::size_t mid = (lo + hi) / 2;
      (l[mid] >= target ? lo : hi) = mid;
    }
    return static_cast<double>(lo) + (l[lo] - target) / (l[lo] - l[hi]);
  }

 private:
  std::vector<double> log_alpha_bar_;
};

}  // namespace ddm::flow
