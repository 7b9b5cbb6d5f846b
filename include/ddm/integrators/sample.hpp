#pragma once
// sample(): integrate a batch through a time schedule with an integrator, in place.
//
//     ddm::sample(field, x, ddm::schedules::uniform(50), ddm::heun{}, observers...);
//
// Observers are called once per step, after the step, with a step_event: the step index, t,
// t_next, the state x (now at t_next) and the velocity the step evaluated at its start (x_i, t_i).
// An observer may also offer on_start(x, t0) and on_finish(x, t_end). With no observer, the loop
// contains no observer code at all.

#include <cstddef>
#include <type_traits>
#include <utility>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/field.hpp"
#include "ddm/flow/schedule.hpp"
#include "ddm/integrators/integrator.hpp"

namespace ddm {

/// What an observer sees after each step.
template <class T, class Space = host_space>
struct step_event {
  std::size_t index;                  ///< step number, 0-based
  double t;                           ///< time at the start of the step
  double t_next;                      ///< time at its end (the state's time now)
  batch_view<const T, Space> x;       ///< the state after the step, at t_next
  batch_view<const T, Space> v;       ///< the velocity evaluated at (x_i, t) at the start of the step
};

struct sample_options {
  /// Check every velocity the field returns for NaN and infinity. On the first one, sample()
  /// throws ddm::non_finite_error naming the step and time, with x left as it was before that
  /// step. Costs one extra read of each velocity.
  bool check_finite = false;
};

struct sample_result {
  std::size_t steps = 0;               ///< schedule steps taken
  std::size_t field_evaluations = 0;   ///< calls of the field
  std::size_t accepted_steps = 0;      ///< internal steps accepted (= steps for fixed-step methods)
  std::size_t rejected_steps = 0;      ///< internal steps rejected by error control
};

/// O is an observer of steps of batches of T in Space.
template <class O, class T, class Space = host_space>
concept step_observer = std::invocable<O&, const step_event<T, Space>&>;

namespace detail {

// Counts the field's calls and, when asked, checks what it returns.
template <class F, class Space>
struct monitored_field {
  F* f;
  const execution_context<Space>* ctx;
  std::size_t* count;
  const std::size_t* step;
  bool check;

  template <class T>
  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> v) {
    (*f)(x, t, v);
    ++*count;
    if (check && !all_finite(*ctx, v))
      throw non_finite_error(concat("ddm::sample: the field returned a NaN or infinite velocity at step ", *step,
                                    " (evaluated at t = ", t, "); x was left as it was before this step"),
                             static_cast<long>(*step), t);
  }
};

template <class O, class T, class Space>
void notify_start(O& o, batch_view<const T, Space> x, double t0) {
  if constexpr (requires { o.on_start(x, t0); }) o.on_start(x, t0);
}
template <class O, class T, class Space>
void notify_finish(O& o, batch_view<const T, Space> x, double t1) {
  if constexpr (requires { o.on_finish(x, t1); }) o.on_finish(x, t1);
}

}  // namespace detail

/// Integrate x (in place) from schedule.front() to schedule.back(), with an explicit context and
/// options.
template <class Field, class T, class Space, class Integrator, class... Observers>
sample_result sample(const execution_context<Space>& ctx, const sample_options& options, Field&& field,
                     batch_view<T, Space> x, const time_schedule& schedule, const Integrator& integ,
                     Observers&&... observers) {
  require_velocity_field<std::remove_reference_t<Field>, T, Space>();
  static_assert(integrator<Integrator, T, Space>,
                "ddm::sample: the integrator argument is not a ddm::integrator (it needs static order and "
                "name members and make_stepper<T>(ctx, rows, cols))");
  static_assert((step_observer<std::remove_reference_t<Observers>, T, Space> && ...),
                "ddm::sample: every observer must be callable as observer(const ddm::step_event<T, Space>&)");
  detail::require_non_empty("ddm::sample", "x", x);

  auto stepper = integ.template make_stepper<T>(ctx, x.rows(), x.cols());
  sample_result result;
  std::size_t step = 0;
  detail::monitored_field<std::remove_reference_t<Field>, Space> f{&field, &ctx, &result.field_evaluations, &step,
                                                                   options.check_finite};
  if constexpr (sizeof...(Observers) > 0) (detail::notify_start(observers, x.as_const(), schedule.front()), ...);
  for (; step < schedule.steps(); ++step) {
    const double t = schedule[step];
    const double t_next = schedule[step + 1];
    stepper.step(f, x, t, t_next);
    if constexpr (sizeof...(Observers) > 0) {
      const step_event<T, Space> event{step, t, t_next, x.as_const(), stepper.velocity()};
      (observers(event), ...);
    }
  }
  if constexpr (sizeof...(Observers) > 0) (detail::notify_finish(observers, x.as_const(), schedule.back()), ...);
  result.steps = schedule.steps();
  if constexpr (requires { stepper.stats(); }) {
    result.accepted_steps = stepper.stats().accepted;
    result.rejected_steps = stepper.stats().rejected;
  } else {
    result.accepted_steps = result.steps;
  }
  return result;
}

/// Integrate with the space's default context and default options.
template <class Field, class T, class Space, class Integrator, class... Observers>
sample_result sample(Field&& field, batch_view<T, Space> x, const time_schedule& schedule, const Integrator& integ,
                     Observers&&... observers) {
  return sample(execution_context<Space>{}, sample_options{}, std::forward<Field>(field), x, schedule, integ,
                std::forward<Observers>(observers)...);
}

/// Integrate with the space's default context and the given options.
template <class Field, class T, class Space, class Integrator, class... Observers>
sample_result sample(const sample_options& options, Field&& field, batch_view<T, Space> x,
                     const time_schedule& schedule, const Integrator& integ, Observers&&... observers) {
  return sample(execution_context<Space>{}, options, std::forward<Field>(field), x, schedule, integ,
                std::forward<Observers>(observers)...);
}

/// Owning batches are sampled through their view.
template <class Field, class T, class Space, class Integrator, class... Observers>
sample_result sample(Field&& field, batch<T, Space>& x, const time_schedule& schedule, const Integrator& integ,
                     Observers&&... observers) {
  return sample(x.context(), sample_options{}, std::forward<Field>(field), x.view(), schedule, integ,
                std::forward<Observers>(observers)...);
}
template <class Field, class T, class Space, class Integrator, class... Observers>
sample_result sample(const sample_options& options, Field&& field, batch<T, Space>& x, const time_schedule& schedule,
                     const Integrator& integ, Observers&&... observers) {
  return sample(x.context(), options, std::forward<Field>(field), x.view(), schedule, integ,
                std::forward<Observers>(observers)...);
}

}  // namespace ddm
