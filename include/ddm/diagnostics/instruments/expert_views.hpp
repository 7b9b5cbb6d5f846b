#pragma once
// How the routing diagnostics take the velocities of K experts at one state: a span of K views,
// each (B, D), view k holding expert k's velocity for every row of the batch.
//
// A span of views was chosen over one stacked (K * B, D) batch because the experts' outputs
// usually live in separate buffers (one per expert call), and views cost nothing to collect; a
// stacked buffer (expert k in rows [k B, (k + 1) B), the layout of one batched call over K
// experts) is turned into such views by split_stacked().

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"

namespace ddm::diagnostics {

/// The K views of a stacked (K * B, D) batch: view k is rows [k B, (k + 1) B).
template <class T, class Space>
[[nodiscard]] std::vector<batch_view<const T, Space>> split_stacked(batch_view<const T, Space> stacked, index_t experts) {
  const char* where = "ddm::diagnostics::split_stacked";
  if (experts < 1) ddm::fail_argument(where, "experts", experts, ">= 1");
  if (stacked.rows() % experts != 0)
    throw shape_error(ddm::concat(where, ": argument 'stacked' has ", stacked.rows(), " rows, expected a multiple of ",
                                          "experts = ", experts, " (K * B rows, expert k in rows [k B, (k + 1) B))"));
  const index_t b = stacked.rows() / experts;
  std::vector<batch_view<const T, Space>> out;
  out.reserve(static_cast<std::size_t>(experts));
  for (index_t k = 0; k < experts; ++k) out.push_back(stacked.subrows(k * b, b));
  return out;
}

namespace detail {

// Every expert view has the shape (rows, cols) of the first; at least `min_experts` of them.
template <class T, class Space>
void check_expert_views(const char* where, std::span<const batch_view<const T, Space>> experts, std::size_t min_experts) {
  if (experts.size() < min_experts)
    throw argument_error(ddm::concat(where, ": argument 'experts' holds ", experts.size(),
                                             " velocity views, expected at least ", min_experts));
  for (std::size_t k = 0; k < experts.size(); ++k) {
    if (experts[k].empty())
      throw empty_batch_error(ddm::concat(where, ": expert view ", k, " is empty (", experts[k].rows(), ", ",
                                                  experts[k].cols(), "), expected at least one row and one column"));
    if (!same_shape(experts[k], experts[0]))
      throw shape_error(ddm::concat(where, ": expert view ", k, " has shape (", experts[k].rows(), ", ",
                                            experts[k].cols(), "), expected (", experts[0].rows(), ", ",
                                            experts[0].cols(), ") like expert view 0"));
  }
}

// A NaN or infinity in a host view is an error naming the argument (`index` >= 0: its index in a
// list of views), the first row that holds one and its value: the per-row geometry downstream
// (angles, distances, ranks) would otherwise turn it silently into an undefined angle or rank 1.
template <class T, class Space>
void require_finite_view(const char* where, const char* name, long index, batch_view<const T, Space> v) {
  static_assert(Space::host_accessible, "ddm::diagnostics: require_finite_view reads host memory");
  for (index_t r = 0; r < v.rows(); ++r)
    for (index_t c = 0; c < v.cols(); ++c) {
      const double value = static_cast<double>(v(r, c));
      if (std::isfinite(value)) continue;
      if (index >= 0)
        throw non_finite_error(ddm::concat(where, ": argument '", name, "' view ", index, " holds ", value,
                                                   " in row ", r, ", column ", c, ", expected finite values"));
      throw non_finite_error(ddm::concat(where, ": argument '", name, "' holds ", value, " in row ", r,
                                                 ", column ", c, ", expected finite values"));
    }
}

// selected is (B, K) with values 0 or 1.
template <class Space>
void check_selection(const char* where, batch_view<const std::uint8_t, Space> selected, index_t rows, index_t experts) {
  ddm::require_shape(where, "selected", selected, rows, experts);
  if constexpr (Space::host_accessible) {
    for (index_t r = 0; r < rows; ++r)
      for (index_t k = 0; k < experts; ++k)
        if (selected(r, k) > 1)
          throw argument_error(ddm::concat(where, ": argument 'selected' has value ", int{selected(r, k)},
                                                   " at (", r, ", ", k, "), expected 0 or 1"));
  }
}

}  // namespace detail
}  // namespace ddm::diagnostics
