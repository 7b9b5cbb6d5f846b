#pragma once
// Ensembles of experts. Any velocity field is an expert; an expert set gives K of them an index.
//
//   e.size()                         the number of experts K
//   e.evaluate(k, x, t, v)           expert k on the whole batch x
//   e.evaluate(k, x, t, v, rows)     expert k on a sub-batch whose row i is row rows(i, 0) of the
//                                    caller's batch (passed on to experts that take conditioning)
//
// Three models:
//   ensemble<E0, E1, ...>            heterogeneous: each expert its own type (a std::tuple)
//   expert_vector<E>                 homogeneous: a std::vector<E>
//   any_velocity_field<T, Space>     a type-erased expert, for expert_vector<any_velocity_field<T>>
//                                    (= any_ensemble<T>) when the experts' types are only known at
//                                    run time
// An expert that takes per-sample conditioning is also callable as f(x, t, v, rows) (see
// ddm/core/conditioning.hpp); the plain call f(x, t, v) then means rows = 0..B-1.
//
// Grouped evaluation: a routed field hands all the (expert, rows) groups of one call over at once,
// through ddm::evaluate_groups(experts, t, groups). An expert set that can do better than one
// evaluate() per group (one that sends the groups to other processes: ddm::mpi::distributed_experts)
// offers e.evaluate_groups(t, groups) and is a ddm::grouped_expert_set; for every other set
// evaluate_groups calls evaluate() per group, in order, which is what the routed field always did.

#include <concepts>
#include <cstddef>
#include <memory>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/conditioning.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/field.hpp"
#include "ddm/core/memory_space.hpp"

namespace ddm {

/// E holds K experts for batches of T in Space, addressed by index.
template <class E, class T, class Space = host_space>
concept expert_set = requires(E& e, const E& ce, std::size_t k, batch_view<const T, Space> x, double t,
                              batch_view<T, Space> v, row_index_view<Space> rows) {
  { ce.size() } -> std::convertible_to<std::size_t>;
  e.evaluate(k, x, t, v);
  e.evaluate(k, x, t, v, rows);
};

/// One expert's share of a routed-field call: expert `expert` on the n rows of x, which are rows
/// rows(i, 0) of the batch the caller was given (the conditioning of a conditioned expert), writing
/// its velocities to v.
template <class T, class Space = host_space>
struct expert_group {
  std::size_t expert = 0;
  batch_view<const T, Space> x;   ///< (n, D) the expert's rows, gathered
  row_index_view<Space> rows;     ///< (n, 1) their indices in the caller's batch
  batch_view<T, Space> v;         ///< (n, D) where the expert's velocities go
};

/// An expert set that evaluates all the groups of one routed-field call together:
/// e.evaluate_groups(t, groups), with every group's x, rows and v as in expert_group. A set whose
/// evaluation is collective over several processes also declares `static constexpr bool
/// collective = true`: the routed field then calls evaluate_groups on every call, even one with no
/// rows, so that every process takes part in every exchange.
template <class E, class T, class Space = host_space>
concept grouped_expert_set =
    expert_set<E, T, Space> && requires(E& e, double t, std::span<const expert_group<T, Space>> groups) {
      e.evaluate_groups(t, groups);
    };

/// Whether E's evaluation must be entered by every process on every call (see grouped_expert_set).
template <class E>
inline constexpr bool collective_expert_set = requires { requires E::collective; };

/// Evaluate every group of one call: through the set's own evaluate_groups when it has one,
/// otherwise one evaluate(k, x, t, v, rows) per group, in the order given.
template <class T, class Space, class E>
  requires expert_set<E, T, Space>
void evaluate_groups(E& experts, double t, std::span<const expert_group<T, Space>> groups) {
  if constexpr (grouped_expert_set<E, T, Space>) {
    experts.evaluate_groups(t, groups);
  } else {
    for (const auto& g : groups) experts.evaluate(g.expert, g.x, t, g.v, g.rows);
  }
}

namespace detail {
[[noreturn]] inline void fail_expert_index(const char* where, std::size_t k, std::size_t size) {
  throw argument_error(concat(where, ": argument 'k' = ", k, ", expected an expert index in [0, ", size, ")"));
}
inline void check_expert_index(const char* where, std::size_t k, std::size_t size) {
  if (k >= size) fail_expert_index(where, k, size);
}
}  // namespace detail

/// A heterogeneous ensemble: expert k is the k-th constructor argument, each of its own type.
template <class... Experts>
class ensemble {
  static_assert(sizeof...(Experts) >= 1, "ddm::ensemble: an ensemble needs at least one expert");

 public:
  explicit ensemble(Experts... experts) : experts_(std::move(experts)...) {}

  [[nodiscard]] static constexpr std::size_t size() noexcept { return sizeof...(Experts); }

  template <std::size_t I>
  [[nodiscard]] auto& get() noexcept {
    return std::get<I>(experts_);
  }
  template <std::size_t I>
  [[nodiscard]] const auto& get() const noexcept {
    return std::get<I>(experts_);
  }

  template <class T, class Space>
    requires(velocity_field<Experts, T, Space> && ...)
  void evaluate(std::size_t k, batch_view<const T, Space> x, double t, batch_view<T, Space> v) {
    detail::check_expert_index("ddm::ensemble::evaluate", k, size());
    visit_(k, [&](auto& f) { f(x, t, v); });
  }

  template <class T, class Space>
    requires(velocity_field<Experts, T, Space> && ...)
  void evaluate(std::size_t k, batch_view<const T, Space> x, double t, batch_view<T, Space> v,
                row_index_view<Space> rows) {
    detail::check_expert_index("ddm::ensemble::evaluate", k, size());
    visit_(k, [&](auto& f) { call_field(f, x, t, v, rows); });
  }

  /// out = J_k(x, t) u for expert k, when every expert offers an exact jvp.
  template <class T, class Space>
    requires(has_jvp<Experts, T, Space> && ...)
  void jvp(std::size_t k, batch_view<const T, Space> x, double t, batch_view<const T, Space> u,
           batch_view<T, Space> out) {
    detail::check_expert_index("ddm::ensemble::jvp", k, size());
    visit_(k, [&](auto& f) { f.jvp(x, t, u, out); });
  }

 private:
  template <class Fn>
  void visit_(std::size_t k, Fn&& fn) {
    visit_impl_(k, fn, std::index_sequence_for<Experts...>{});
  }
  template <class Fn, std::size_t... I>
  void visit_impl_(std::size_t k, Fn& fn, std::index_sequence<I...> /*seq*/) {
    (void)((k == I ? (fn(std::get<I>(experts_)), true) : false) || ...);
  }

  std::tuple<Experts...> experts_;
};

template <class... Experts>
ensemble(Experts...) -> ensemble<Experts...>;

/// ensemble of the given experts (copied or moved in).
template <class... Experts>
[[nodiscard]] ensemble<std::decay_t<Experts>...> make_ensemble(Experts&&... experts) {
  return ensemble<std::decay_t<Experts>...>(std::forward<Experts>(experts)...);
}

/// A homogeneous ensemble: K experts of one type.
template <class Expert>
class expert_vector {
 public:
  expert_vector() = default;
  explicit expert_vector(std::vector<Expert> experts) : experts_(std::move(experts)) {}

  [[nodiscard]] std::size_t size() const noexcept { return experts_.size(); }
  [[nodiscard]] Expert& operator[](std::size_t k) noexcept { return experts_[k]; }
  [[nodiscard]] const Expert& operator[](std::size_t k) const noexcept { return experts_[k]; }
  [[nodiscard]] auto begin() noexcept { return experts_.begin(); }
  [[nodiscard]] auto end() noexcept { return experts_.end(); }
  [[nodiscard]] auto begin() const noexcept { return experts_.begin(); }
  [[nodiscard]] auto end() const noexcept { return experts_.end(); }

  void push_back(Expert e) { experts_.push_back(std::move(e)); }

  template <class T, class Space>
    requires velocity_field<Expert, T, Space>
  void evaluate(std::size_t k, batch_view<const T, Space> x, double t, batch_view<T, Space> v) {
    detail::check_expert_index("ddm::expert_vector::evaluate", k, size());
    experts_[k](x, t, v);
  }

  template <class T, class Space>
    requires velocity_field<Expert, T, Space>
  void evaluate(std::size_t k, batch_view<const T, Space> x, double t, batch_view<T, Space> v,
                row_index_view<Space> rows) {
    detail::check_expert_index("ddm::expert_vector::evaluate", k, size());
    call_field(experts_[k], x, t, v, rows);
  }

  template <class T, class Space>
    requires has_jvp<Expert, T, Space>
  void jvp(std::size_t k, batch_view<const T, Space> x, double t, batch_view<const T, Space> u,
           batch_view<T, Space> out) {
    detail::check_expert_index("ddm::expert_vector::jvp", k, size());
    experts_[k].jvp(x, t, u, out);
  }

 private:
  std::vector<Expert> experts_;
};

/// A type-erased expert for batches of T in Space: holds any velocity field (move-only experts
/// included, so it is move-only itself). Taking conditioning is kept: a held expert that accepts
/// row indices gets them. Exact jvp/vjp are not forwarded (a diagnostics caller could not tell
/// whether the held expert has them); hold the concrete type where they are needed.
template <class T, class Space = host_space>
class any_velocity_field {
 public:
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, any_velocity_field> &&
             velocity_field<std::remove_cvref_t<F>, T, Space>)
  any_velocity_field(F&& f)  // NOLINT: implicit, like std::function
      : impl_(std::make_unique<model<std::remove_cvref_t<F>>>(std::forward<F>(f))) {}

  any_velocity_field(any_velocity_field&&) noexcept = default;
  any_velocity_field& operator=(any_velocity_field&&) noexcept = default;

  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> v) { impl_->call(x, t, v); }
  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> v, row_index_view<Space> rows) {
    impl_->call(x, t, v, rows);
  }

  /// Whether the held expert takes per-sample conditioning (row indices).
  [[nodiscard]] bool takes_rows() const noexcept { return impl_->takes_rows(); }

 private:
  struct concept_base {
    virtual ~concept_base() = default;
    virtual void call(batch_view<const T, Space> x, double t, batch_view<T, Space> v) = 0;
    virtual void call(batch_view<const T, Space> x, double t, batch_view<T, Space> v, row_index_view<Space> rows) = 0;
    [[nodiscard]] virtual bool takes_rows() const noexcept = 0;
  };
  template <class F>
  struct model final : concept_base {
    template <class G>
    explicit model(G&& g) : f(std::forward<G>(g)) {}
    void call(batch_view<const T, Space> x, double t, batch_view<T, Space> v) override { f(x, t, v); }
    void call(batch_view<const T, Space> x, double t, batch_view<T, Space> v, row_index_view<Space> rows) override {
      call_field(f, x, t, v, rows);
    }
    [[nodiscard]] bool takes_rows() const noexcept override { return conditioned_velocity_field<F, T, Space>; }
    F f;
  };
  std::unique_ptr<concept_base> impl_;
};

/// K type-erased experts of value type T in Space.
template <class T, class Space = host_space>
using any_ensemble = expert_vector<any_velocity_field<T, Space>>;

}  // namespace ddm
