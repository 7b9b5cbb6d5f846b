#pragma once
// Euler: x_{i+1} = x_i + (t_{i+1} - t_i) v(x_i, t_i). Order 1, one evaluation per step.

#include "ddm/integrators/integrator.hpp"

namespace ddm {

struct euler {
  static constexpr int order = 1;
  static constexpr int evaluations_per_step = 1;
  static constexpr const char* name() noexcept { return "euler"; }

  [[nodiscard]] std::size_t evaluations(const time_schedule& s) const noexcept { return s.steps(); }

  template <class T, class Space>
  class stepper {
   public:
    stepper(const execution_context<Space>& ctx, index_t rows, index_t cols) : ctx_(ctx), v_(ctx, rows, cols) {}

    template <class F>
    void step(F& f, batch_view<T, Space> x, double t, double t_next) {
      detail::check_stepper_shape("ddm::euler::step", x, v_.rows(), v_.cols());
      detail::check_step_times("ddm::euler::step", t, t_next);
      f(x.as_const(), t, v_.view());
      lincomb(ctx_, x, {1.0, t_next - t}, x, v_);
    }

    [[nodiscard]] batch_view<const T, Space> velocity() const noexcept { return v_.cview(); }

    /// Nothing carries over from one step to the next; here for ddm::sampler.
    void reset() noexcept {}

   private:
    execution_context<Space> ctx_;
    batch<T, Space> v_;
  };

  template <class T, class Space>
  [[nodiscard]] stepper<T, Space> make_stepper(const execution_context<Space>& ctx, index_t rows, index_t cols) const {
    return stepper<T, Space>(ctx, rows, cols);
  }
};

/// DDIM in rectified-flow variables: x_{i+1} = (1 - t_{i+1}) x0_hat + t_{i+1} eps_hat, with
/// x0_hat = x - t v and eps_hat = x + (1 - t) v. Algebraically the Euler step; kept as its own
/// integrator so that the identity can be tested and DDIM users find the name.
struct ddim {
  static constexpr int order = 1;
  static constexpr int evaluations_per_step = 1;
  static constexpr const char* name() noexcept { return "ddim"; }

  [[nodiscard]] std::size_t evaluations(const time_schedule& s) const noexcept { return s.steps(); }

  template <class T, class Space>
  class stepper {
   public:
    stepper(const execution_context<Space>& ctx, index_t rows, index_t cols)
        : ctx_(ctx), v_(ctx, rows, cols), x0_(ctx, rows, cols) {}

    template <class F>
    void step(F& f, batch_view<T, Space> x, double t, double t_next) {
      detail::check_stepper_shape("ddm::ddim::step", x, v_.rows(), v_.cols());
      detail::check_step_times("ddm::ddim::step", t, t_next);
      f(x.as_const(), t, v_.view());
      lincomb(ctx_, x0_.view(), {1.0, -t}, x, v_);             // x0_hat
      lincomb(ctx_, x, {t_next, t_next * (1.0 - t)}, x, v_);   // t' eps_hat
      lincomb(ctx_, x, {1.0, 1.0 - t_next}, x, x0_);           // + (1 - t') x0_hat
    }

    [[nodiscard]] batch_view<const T, Space> velocity() const noexcept { return v_.cview(); }

    /// Nothing carries over from one step to the next; here for ddm::sampler.
    void reset() noexcept {}

   private:
    execution_context<Space> ctx_;
    batch<T, Space> v_;
    batch<T, Space> x0_;
  };

  template <class T, class Space>
  [[nodiscard]] stepper<T, Space> make_stepper(const execution_context<Space>& ctx, index_t rows, index_t cols) const {
    return stepper<T, Space>(ctx, rows, cols);
  }
};

}  // namespace ddm
