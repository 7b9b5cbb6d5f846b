#pragma once
// What an integrator is.
//
// An integrator is a small description (its order, its field evaluations, its options) that
// makes a *stepper* for one value type and memory space. The stepper owns the workspace (and, for
// multistep methods, the history) and advances a batch in place from t to t_next:
//
//     auto s = integrator.make_stepper<T>(ctx, rows, cols);
//     s.step(field, x, t, t_next);       // x <- x(t_next); the field is called 1..k times
//     s.velocity();                      // v(x, t) at the start of the last step
//
// Steppers write into x only after their last field evaluation of the step, so an exception from
// the field leaves x as it was. They do all arithmetic through the state algebra (ddm::lincomb),
// so they run unchanged on any memory space that has one.

#include <concepts>
#include <cstddef>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/flow/schedule.hpp"

namespace ddm {

/// I describes an integrator: static order and name() (ddm::named, and static so that a registry
/// reads it without an instance), field evaluations for a schedule, and a
/// stepper for value type T in Space.
template <class I, class T, class Space = host_space>
concept integrator = requires(const I& i, const execution_context<Space>& ctx, const time_schedule& s) {
  { I::order } -> std::convertible_to<int>;
  { I::name() } -> std::convertible_to<const char*>;
  { i.template make_stepper<T>(ctx, index_t{}, index_t{}) };
};

/// Integrators whose number of field evaluations is fixed by the schedule.
template <class I>
concept fixed_step_integrator = requires(const I& i, const time_schedule& s) {
  { I::evaluations_per_step } -> std::convertible_to<int>;
  { i.evaluations(s) } -> std::convertible_to<std::size_t>;
};

namespace detail {

template <class T, class Space>
void check_stepper_shape(const char* where, const batch_view<T, Space>& x, index_t rows, index_t cols) {
  require_shape(where, "x", x, rows, cols);
}

inline void check_step_times(const char* where, double t, double t_next) {
  if (!(t <= 1.0 && t_next >= 0.0 && t_next < t))
    throw_error<schedule_error>(where, ": step from t = ", t, " to t_next = ", t_next,
                                ", expected 1 >= t > t_next >= 0");
}

}  // namespace detail
}  // namespace ddm
