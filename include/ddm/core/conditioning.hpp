#pragma once
// Per-sample conditioning for fields that see only part of a batch.
//
// Real experts take per-sample conditioning (a class label, a text embedding, a guidance
// scale). When a routed field hands an expert a sub-batch gathered from a larger batch, the
// expert must condition row i of its sub-batch on the conditioning of the original row. Such an
// expert is callable as
//
//     f(batch_view<const T, Space> x, double t, batch_view<T, Space> v, row_index_view<Space> rows)
//
// where rows(i, 0) is the index, in the batch the caller was given, of row i of x. Experts that do
// not take conditioning are called as plain velocity fields; nothing changes for them.

#include <concepts>
#include <cstdint>

#include "ddm/core/batch.hpp"
#include "ddm/core/field.hpp"
#include "ddm/core/memory_space.hpp"

namespace ddm {

/// (n, 1) original row indices of the n rows of a sub-batch.
template <class Space = host_space>
using row_index_view = batch_view<const std::int32_t, Space>;

/// F takes the original row index of every row it is given:
/// f(batch_view<const T, Space> x, double t, batch_view<T, Space> v, row_index_view<Space> rows).
template <class F, class T, class Space = host_space>
concept conditioned_velocity_field =
    std::invocable<F&, batch_view<const T, Space>, double, batch_view<T, Space>, row_index_view<Space>>;

/// Call f on a (sub-)batch whose rows came from rows `rows` of the caller's batch: with the row
/// indices when f takes them, as a plain velocity field otherwise.
template <class F, class T, class Space>
  requires(velocity_field<F, T, Space> || conditioned_velocity_field<F, T, Space>)
void call_field(F& f, batch_view<const T, Space> x, double t, batch_view<T, Space> v, row_index_view<Space> rows) {
  if constexpr (conditioned_velocity_field<F, T, Space>) {
    f(x, t, v, rows);
  } else {
    f(x, t, v);
  }
}

}  // namespace ddm
