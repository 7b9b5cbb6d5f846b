#pragma once
// sample(): integrate a batch through a time schedule with an integrator, in place.
//
//     ddm::sample(field, x, ddm::schedules::uniform(50), ddm::heun{}, observers...);
//
// ddm::sampler does the same for batches of one shape again and again, keeping the stepper (and
// its buffers) between runs. sample() keeps them too when its context points to a
// ddm::workspace_pool (ctx.scratch): the stepper is lent from the pool for the call and handed
// back after it, so repeated calls with the same integrator, context and shape allocate nothing.
// A lent stepper is used by one call only: another thread, or a field that itself calls sample()
// with the same context, gets a stepper of its own (see ddm/core/workspace_pool.hpp).
//
// Observers are called once per step, after the step, with a step_event: the step index, t,
// t_next, the state x (now at t_next) and the velocity v the step evaluated at its start
// (x_i, t_i). An observer that measures something at (x_i, t_i) (the routing observer, the
// sensitivity observer) also needs x_i, which the in-place step has overwritten: it says so with
// `static constexpr bool reads_step_start = true;`, and the event's x_start is then x_i, kept by
// the driver in one copy per step that every observer shares (empty when no observer asks, so
// that a progress bar costs no copy). An observer may also offer on_start(x, t0) and
// on_finish(x, t_end). With no observer, the loop contains no observer code at all.
//
// A field that records what it decides per call (ddm::routed_field) is told which of its calls
// starts a step (mark_step_start(), right after the step's first call), so that observers read
// the decision taken at (x_i, t_i) and not a later call's. Without observers only the last step
// is marked (step_decision() after the run is the same; the steps in between have no reader).

#include <concepts>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/field.hpp"
#include "ddm/core/workspace_pool.hpp"
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
  /// x_i, the state v was evaluated at, when an observer of the run reads it (reads_step_start);
  /// empty otherwise.
  batch_view<const T, Space> x_start{};
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

/// O reads step_event::x_start, the state at the start of each step (see the header comment).
template <class O>
concept reads_step_start = requires {
  requires static_cast<bool>(std::remove_cvref_t<O>::reads_step_start);
};

namespace detail {

// Counts the field's calls and, when asked, checks what it returns. A field that records what
// it decides per call (a routed field) is told which call starts a step (mark_step_start), so
// that observers can read the decision taken at (x_i, t_i) after the step.
template <class F, class Space>
struct monitored_field {
  F* f;
  const execution_context<Space>* ctx;
  std::size_t* count;
  const std::size_t* step;
  bool check;
  bool step_start = false;  // the next call is the first of a step

  template <class T>
  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> v) {
    (*f)(x, t, v);
    ++*count;
    if constexpr (requires { f->mark_step_start(); })
      if (step_start) f->mark_step_start();
    step_start = false;
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

namespace detail {

// The sampling loop over a stepper the caller made (and, for ddm::sampler, keeps).
// `start` holds x_i for observers that read it (reads_step_start); the caller owns it so that
// ddm::sampler keeps it between runs.
template <class Field, class T, class Space, class Stepper, class... Observers>
sample_result run_steps(const execution_context<Space>& ctx, const sample_options& options, Field& field,
                        batch_view<T, Space> x, const time_schedule& schedule, Stepper& stepper,
                        batch<T, Space>& start, Observers&... observers) {
  constexpr bool keep_start = (reads_step_start<Observers> || ...);
  sample_result result;
  std::size_t step = 0;
  monitored_field<Field, Space> f{&field, &ctx, &result.field_evaluations, &step, options.check_finite};
  if constexpr (keep_start)
    if (start.rows() != x.rows() || start.cols() != x.cols()) start = batch<T, Space>(ctx, x.rows(), x.cols());
  if constexpr (sizeof...(Observers) > 0) (notify_start(observers, x.as_const(), schedule.front()), ...);
  for (; step < schedule.steps(); ++step) {
    const double t = schedule[step];
    const double t_next = schedule[step + 1];
    if constexpr (keep_start) copy(ctx, start.view(), x.as_const());
    // Marking a step start is for observers, which read the field's step decision after each
    // step; with none, only the last step is marked, so that step_decision() after the run is
    // what it would be had every step been (the marks never change the trajectory).
    if constexpr (sizeof...(Observers) > 0) f.step_start = true;
    else f.step_start = step + 1 == schedule.steps();
    stepper.step(f, x, t, t_next);
    if constexpr (sizeof...(Observers) > 0) {
      step_event<T, Space> event{step, t, t_next, x.as_const(), stepper.velocity()};
      if constexpr (keep_start) event.x_start = start.cview();
      (observers(event), ...);
    }
  }
  if constexpr (sizeof...(Observers) > 0) (notify_finish(observers, x.as_const(), schedule.back()), ...);
  result.steps = schedule.steps();
  if constexpr (requires { stepper.stats(); }) {
    result.accepted_steps = stepper.stats().accepted;
    result.rejected_steps = stepper.stats().rejected;
  } else {
    result.accepted_steps = result.steps;
  }
  return result;
}

template <class Field, class T, class Space, class Integrator, class... Observers>
constexpr void check_sample_arguments() {
  require_velocity_field<std::remove_reference_t<Field>, T, Space>();
  static_assert(integrator<Integrator, T, Space>,
                "ddm::sample: the integrator argument is not a ddm::integrator (it needs static order and "
                "name members and make_stepper<T>(ctx, rows, cols))");
  static_assert((step_observer<std::remove_reference_t<Observers>, T, Space> && ...),
                "ddm::sample: every observer must be callable as observer(const ddm::step_event<T, Space>&)");
}

template <class Integrator, class T, class Space>
using stepper_t = decltype(std::declval<const Integrator&>().template make_stepper<T>(
    std::declval<const execution_context<Space>&>(), index_t{}, index_t{}));

// What sample() keeps in a context's workspace_pool: the stepper and the x_i copy of one
// integrator (type and value: its options shape the stepper), context and shape.
template <class Integrator, class T, class Space>
struct sample_workspace {
  sample_workspace(const Integrator& i, const execution_context<Space>& c, index_t r, index_t n)
      : integ(i), ctx(c), rows(r), cols(n), stepper(i.template make_stepper<T>(c, r, n)) {}

  [[nodiscard]] bool fits(const Integrator& i, const execution_context<Space>& c, index_t r, index_t n) const {
    if (rows != r || cols != n || !(ctx == c)) return false;
    if constexpr (std::is_empty_v<Integrator>) {
      return true;
    } else {
      return integ == i;
    }
  }

  Integrator integ;
  execution_context<Space> ctx;
  index_t rows;
  index_t cols;
  stepper_t<Integrator, T, Space> stepper;
  batch<T, Space> start;
};

// sample() can keep the stepper: the context has a scratch pool and two contexts compare, two
// integrators compare (or carry nothing), and the stepper can start afresh (reset()). Otherwise
// it makes a stepper per call, as it does when ctx.scratch is null.
template <class Integrator, class T, class Space>
concept keeps_stepper =
    requires(const execution_context<Space>& c) {
      { c.scratch } -> std::convertible_to<workspace_pool*>;
      { c == c } -> std::convertible_to<bool>;
    } && std::copy_constructible<Integrator> &&
    (std::is_empty_v<Integrator> || std::equality_comparable<Integrator>) &&
    requires(stepper_t<Integrator, T, Space>& s) { s.reset(); };

}  // namespace detail

/// Integrate x (in place) from schedule.front() to schedule.back(), with an explicit context and
/// options. Makes a new stepper, hence new workspace, on every call, unless ctx.scratch points to
/// a ddm::workspace_pool: then the stepper is kept there for the next call with the same
/// integrator, context and shape (see the header comment). ddm::sampler keeps it too.
template <class Field, class T, class Space, class Integrator, class... Observers>
sample_result sample(const execution_context<Space>& ctx, const sample_options& options, Field&& field,
                     batch_view<T, Space> x, const time_schedule& schedule, const Integrator& integ,
                     Observers&&... observers) {
  detail::check_sample_arguments<Field, T, Space, Integrator, Observers...>();
  ddm::require_non_empty("ddm::sample", "x", x);
  if constexpr (detail::keeps_stepper<Integrator, T, Space>) {
    if (ctx.scratch != nullptr) {
      using kept_type = detail::sample_workspace<Integrator, T, Space>;
      const index_t rows = x.rows();
      const index_t cols = x.cols();
      auto kept = ctx.scratch->template acquire<kept_type>(
          [&](const kept_type& k) { return k.fits(integ, ctx, rows, cols); },
          [&] { return kept_type(integ, ctx, rows, cols); });
      kept->stepper.reset();
      return detail::run_steps(ctx, options, field, x, schedule, kept->stepper, kept->start, observers...);
    }
  }
  auto stepper = integ.template make_stepper<T>(ctx, x.rows(), x.cols());
  batch<T, Space> start;
  return detail::run_steps(ctx, options, field, x, schedule, stepper, start, observers...);
}

/// sample() for batches of one shape again and again: keeps the integrator's stepper, so that a
/// run allocates nothing (sample() allocates the stepper's buffers, and zeroes them, on every
/// call: for a 1024 x 16384 float batch and DPM-Solver++(2M) that is 192 MiB of fresh memory per
/// run). Every run starts afresh, exactly as sample() does: the stepper's reset() forgets the
/// history of multistep methods and the step size of adaptive ones, so a run gives the same
/// result as sample() with the same arguments.
///
///     ddm::sampler<ddm::dpmpp_2m, float> run(ddm::dpmpp_2m{}, rows, cols);
///     for (...) run(field, x, ddm::schedules::uniform(32));
template <class Integrator, class T, class Space = host_space>
class sampler {
  static_assert(integrator<Integrator, T, Space>,
                "ddm::sampler: the integrator argument is not a ddm::integrator (it needs static order and "
                "name members and make_stepper<T>(ctx, rows, cols))");

 public:
  using stepper_type = decltype(std::declval<const Integrator&>().template make_stepper<T>(
      std::declval<const execution_context<Space>&>(), index_t{}, index_t{}));
  static_assert(requires(stepper_type& s) { s.reset(); },
                "ddm::sampler: the integrator's stepper has no reset(); a kept stepper must be able to start "
                "a run afresh (use ddm::sample(), which makes a new stepper per call)");

  sampler(Integrator integ, index_t rows, index_t cols, execution_context<Space> ctx = {}, sample_options options = {})
      : integ_(std::move(integ)), ctx_(ctx), options_(options), stepper_(make_(integ_, ctx_, rows, cols)),
        rows_(rows), cols_(cols) {}

  /// Integrate x, of the shape given at construction, in place (see sample()).
  template <class Field, class... Observers>
  sample_result operator()(Field&& field, batch_view<T, Space> x, const time_schedule& schedule,
                           Observers&&... observers) {
    detail::check_sample_arguments<Field, T, Space, Integrator, Observers...>();
    ddm::require_shape("ddm::sampler", "x", x, rows_, cols_);
    stepper_.reset();
    return detail::run_steps(ctx_, options_, field, x, schedule, stepper_, start_, observers...);
  }
  template <class Field, class... Observers>
  sample_result operator()(Field&& field, batch<T, Space>& x, const time_schedule& schedule,
                           Observers&&... observers) {
    return (*this)(std::forward<Field>(field), x.view(), schedule, std::forward<Observers>(observers)...);
  }

  [[nodiscard]] const Integrator& integrator() const noexcept { return integ_; }
  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }

 private:
  static stepper_type make_(const Integrator& integ, const execution_context<Space>& ctx, index_t rows, index_t cols) {
    if (rows < 1 || cols < 1)
      ddm::throw_error<empty_batch_error>("ddm::sampler: shape (", rows, ", ", cols,
                                             ") given, expected at least one row and one column");
    return integ.template make_stepper<T>(ctx, rows, cols);
  }

  Integrator integ_;
  execution_context<Space> ctx_;
  sample_options options_;
  stepper_type stepper_;
  batch<T, Space> start_;  // x_i for observers that read it; allocated by the first run that has one
  index_t rows_;
  index_t cols_;
};

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
