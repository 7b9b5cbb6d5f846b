#pragma once
// The velocity_field concept and adapters that make callables into velocity fields.
//
// A velocity field is anything callable as
//
//     f(batch_view<const T, Space> x, double t, batch_view<T, Space> v)
//
// writing v(x, t) for every row of x. Lambdas, function objects, a DiT, a routed ensemble are
// all the same to an integrator. A field may also offer exact derivatives as members
//
//     f.jvp(x, t, u, out)   out = J(x, t) u   (row by row)
//     f.vjp(x, t, u, out)   out = J(x, t)^T u
//
// which the Jacobian estimators use instead of finite differences.

#include <concepts>
#include <span>
#include <type_traits>
#include <utility>

#include "ddm/core/batch.hpp"
#include "ddm/core/memory_space.hpp"

namespace ddm {

/// F can be called as f(batch_view<const T, Space> x, double t, batch_view<T, Space> v).
template <class F, class T, class Space = host_space>
concept velocity_field = std::invocable<F&, batch_view<const T, Space>, double, batch_view<T, Space>>;

/// F offers an exact Jacobian-vector product f.jvp(x, t, u, out).
template <class F, class T, class Space = host_space>
concept has_jvp = requires(F& f, batch_view<const T, Space> x, double t, batch_view<const T, Space> u,
                           batch_view<T, Space> out) { f.jvp(x, t, u, out); };

/// F offers an exact vector-Jacobian product f.vjp(x, t, u, out).
template <class F, class T, class Space = host_space>
concept has_vjp = requires(F& f, batch_view<const T, Space> x, double t, batch_view<const T, Space> u,
                           batch_view<T, Space> out) { f.vjp(x, t, u, out); };

/// Checks F against the velocity_field concept with a message a user can read. Use it as the
/// first line of anything that takes a field.
template <class F, class T, class Space>
constexpr void require_velocity_field() {
  static_assert(velocity_field<F, T, Space>,
                "ddm: this callable is not a ddm::velocity_field for the state's value type and memory "
                "space. A velocity field must be callable as "
                "field(ddm::batch_view<const T, Space> x, double t, ddm::batch_view<T, Space> v) and write "
                "the velocity of every row of x into v. For a per-sample function "
                "f(std::span<const T> x, double t, std::span<T> v), wrap it with ddm::per_sample(f).");
}

/// A per-sample callable g(std::span<const T> x, double t, std::span<T> v) as a host velocity
/// field: g is called once per row.
template <class G>
class per_sample_field {
 public:
  explicit per_sample_field(G g) : g_(std::move(g)) {}

  template <class T>
    requires std::invocable<G&, std::span<const T>, double, std::span<T>>
  void operator()(batch_view<const T> x, double t, batch_view<T> v) {
    ddm::require_same_shape("ddm::per_sample_field", "v", v, x);
    for (index_t r = 0; r < x.rows(); ++r) g_(x.row_span(r), t, v.row_span(r));
  }

  [[nodiscard]] G& function() noexcept { return g_; }

 private:
  G g_;
};

/// Wrap a per-sample callable g(std::span<const T>, double, std::span<T>) as a velocity field.
template <class G>
[[nodiscard]] per_sample_field<std::decay_t<G>> per_sample(G&& g) {
  return per_sample_field<std::decay_t<G>>(std::forward<G>(g));
}

}  // namespace ddm
