#pragma once
// Integrators by name, for command lines, configuration files and benchmark tables.
//
//   ddm::with_integrator("dpm++2m", [&](const auto& integ) { ddm::sample(field, x, schedule, integ); });
//   ddm::integrator_names()          // {"euler", "ddim", "heun", ...}
//
// The names are the types' own name() (one source of truth: a table here cannot drift from the
// names reports print). Each integrator is default-constructed (adaptive pairs at their default
// tolerances, dpm++3m with its third-order D2). The callable is instantiated once per integrator
// of the list: a program that compiles heavy code per integrator (a CUDA routed field, say) passes
// the shorter list it needs, and the error for an unknown name then lists that one.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ddm/core/error.hpp"
#include "ddm/integrators/adaptive.hpp"
#include "ddm/integrators/dpm_solver.hpp"
#include "ddm/integrators/euler.hpp"
#include "ddm/integrators/heun.hpp"

namespace ddm {

/// A list of integrator types to choose from by name.
template <class... Integrators>
struct integrator_list {
  static_assert(sizeof...(Integrators) >= 1, "ddm::integrator_list: name at least one integrator");
};

/// Every integrator ddm has, in the order integrator_names() lists them.
using builtin_integrators =
    integrator_list<euler, ddim, heun, dpmpp_1, dpmpp_2m, dpmpp_2s, dpmpp_3m, adaptive_bs32, adaptive_dopri5>;

/// The names of the integrators of a list (default: every one ddm has), in its order.
template <class... Integrators>
[[nodiscard]] std::vector<std::string> integrator_names(integrator_list<Integrators...> /*list*/) {
  return {std::string(Integrators::name())...};
}
[[nodiscard]] inline std::vector<std::string> integrator_names() { return integrator_names(builtin_integrators{}); }

/// The names joined by ", " (for usage texts and error messages).
template <class... Integrators>
[[nodiscard]] std::string integrator_names_joined(integrator_list<Integrators...> list) {
  std::string out;
  for (const auto& n : integrator_names(list)) out += (out.empty() ? "" : ", ") + n;
  return out;
}
[[nodiscard]] inline std::string integrator_names_joined() { return integrator_names_joined(builtin_integrators{}); }

namespace detail {

template <class All>
[[noreturn]] void unknown_integrator(std::string_view name, All all) {
  throw_error<argument_error>("ddm::with_integrator: argument 'name' = '", name, "', expected one of ",
                              integrator_names_joined(all));
}

template <class All, class F, class First, class... Rest>
decltype(auto) with_integrator_in(std::string_view name, F& f, All all, integrator_list<First, Rest...> /*rest*/) {
  if (name == std::string_view(First::name())) return f(First{});
  if constexpr (sizeof...(Rest) == 0) {
    unknown_integrator(name, all);
  } else {
    return with_integrator_in(name, f, all, integrator_list<Rest...>{});
  }
}

}  // namespace detail

/// Calls f(integrator) with the default-constructed integrator whose name() is `name`, among those
/// of `list` (default: every integrator ddm has), and returns what f returns (the same type for
/// every integrator). An unknown name throws ddm::argument_error listing the known ones.
template <class F, class... Integrators>
decltype(auto) with_integrator(std::string_view name, F&& f, integrator_list<Integrators...> list) {
  return detail::with_integrator_in(name, f, list, list);
}
template <class F>
decltype(auto) with_integrator(std::string_view name, F&& f) {
  return with_integrator(name, std::forward<F>(f), builtin_integrators{});
}

}  // namespace ddm
