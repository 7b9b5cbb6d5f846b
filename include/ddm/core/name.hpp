#pragma once
// One rule for every component that ddm asks a name of (routers, routing policies, and experts
// that offer one): name() returns anything string-like (const char*, std::string,
// std::string_view, ...). ddm only reads the name while the call that asked for it runs, for
// reports and error messages.

#include <concepts>
#include <string>
#include <string_view>

namespace ddm {

/// S reads as a string: const char*, std::string, std::string_view and whatever converts to them.
template <class S>
concept string_like = std::convertible_to<S, std::string_view>;

/// C has a name() whose result is string_like.
template <class C>
concept named = requires(const C& c) {
  { c.name() } -> string_like;
};

/// The name of a named component, as an owning string (safe to keep after c is gone).
template <named C>
[[nodiscard]] std::string name_of(const C& c) {
  return std::string(std::string_view(c.name()));
}

}  // namespace ddm
