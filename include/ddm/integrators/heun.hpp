#pragma once
// Heun's method as in EDM (Karras et al. 2022, algorithm 2, without churn):
//   x' = x_i + dt v(x_i, t_i);  x_{i+1} = x_i + dt/2 (v(x_i, t_i) + v(x', t_{i+1})).
// The step into t = 0 is a plain Euler step (k-diffusion and stable-diffusion.cpp do the same):
// the corrector would evaluate the field at the data end, where many models are not defined.
// Order 2; 2 evaluations per step, 1 on the final step into 0.

#include "ddm/integrators/integrator.hpp"

namespace ddm {

struct heun {
  static constexpr int order = 2;
  static constexpr int evaluations_per_step = 2;
  static constexpr const char* name() noexcept { return "heun"; }

  [[nodiscard]] std::size_t evaluations(const time_schedule& s) const noexcept {
    return 2 * s.steps() - (s.ends_at_zero() ? 1 : 0);
  }

  template <class T, class Space>
  class stepper {
   public:
    stepper(const execution_context<Space>& ctx, index_t rows, index_t cols)
        : ctx_(ctx), v0_(ctx, rows, cols), v1_(ctx, rows, cols), xp_(ctx, rows, cols) {}

    template <class F>
    void step(F& f, batch_view<T, Space> x, double t, double t_next) {
      detail::check_stepper_shape("ddm::heun::step", x, v0_.rows(), v0_.cols());
      detail::check_step_times("ddm::heun::step", t, t_next);
      const double dt = t_next - t;
      f(x.as_const(), t, v0_.view());
      if (t_next == 0.0) {
        lincomb(ctx_, x, {1.0, dt}, x, v0_);
        return;
      }
      lincomb(ctx_, xp_.view(), {1.0, dt}, x, v0_);
      f(xp_.cview(), t_next, v1_.view());
      lincomb(ctx_, x, {1.0, 0.5 * dt, 0.5 * dt}, x, v0_, v1_);
    }

    [[nodiscard]] batch_view<const T, Space> velocity() const noexcept { return v0_.cview(); }

    /// Nothing carries over from one step to the next; here for ddm::sampler.
    void reset() noexcept {}

   private:
    execution_context<Space> ctx_;
    batch<T, Space> v0_, v1_, xp_;
  };

  template <class T, class Space>
  [[nodiscard]] stepper<T, Space> make_stepper(const execution_context<Space>& ctx, index_t rows, index_t cols) const {
    return stepper<T, Space>(ctx, rows, cols);
  }
};

}  // namespace ddm
