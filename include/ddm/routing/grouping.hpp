#pragma once
// Moving rows between a batch and per-expert sub-batches: the data movement of a routed field.
//
//   group_rows_by_expert   a counting sort of the (row, expert) pairs a policy selected, by expert:
//                          expert k's rows are row_index[offsets[k], offsets[k + 1]), ascending
//   gather_rows            dst(i, :) = src(rows(i), :)              (an expert's contiguous sub-batch)
//   scatter_add_weighted   v(rows(i), :) += weights(rows(i), k) * vk(i, :)
//
// expert_grouping<Space> does the work and is specialized per memory space (CUDA: a sort by key
// with CUB, gather and scatter kernels). `offsets` always lives on the host, because the caller
// needs the per-expert counts to size the sub-batches and to skip experts nobody selected.

#include <algorithm>
#include <cstdint>
#include <span>
#include <type_traits>

#include "ddm/core/batch.hpp"
#include "ddm/core/conditioning.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/parallel.hpp"

namespace ddm {

template <class Space>
struct expert_grouping {
  static_assert(sizeof(Space) == 0,
                "ddm: there is no expert grouping for this memory space. For ddm::cuda_space, include "
                "<ddm/cuda.hpp> and link ddm::cuda.");
};

template <>
struct expert_grouping<host_space> {
  static void group(const host_context& /*ctx*/, batch_view<const std::uint8_t> selected,
                    batch_view<std::int32_t> row_index, std::span<index_t> offsets) {
    const index_t experts = selected.cols();
    for (auto& o : offsets) o = 0;
    for (index_t r = 0; r < selected.rows(); ++r)
      for (index_t k = 0; k < experts; ++k) offsets[static_cast<std::size_t>(k + 1)] += selected(r, k) != 0 ? 1 : 0;
    for (index_t k = 0; k < experts; ++k)
      offsets[static_cast<std::size_t>(k + 1)] += offsets[static_cast<std::size_t>(k)];
    // Fill expert by expert so that each expert's rows come out in ascending order; K is small.
    for (index_t k = 0; k < experts; ++k) {
      index_t next = offsets[static_cast<std::size_t>(k)];
      for (index_t r = 0; r < selected.rows(); ++r)
        if (selected(r, k) != 0) row_index(next++, 0) = static_cast<std::int32_t>(r);
    }
  }

  template <class U>
  static void gather(const host_context& ctx, batch_view<const U> src, row_index_view<host_space> rows,
                     batch_view<U> dst) {
    // Whole rows: std::copy_n becomes memmove for these trivially copyable values (about half the
    // instructions of the element loop, measured under callgrind for 4 KiB rows).
    for_row_ranges(ctx, rows.rows(), src.cols(), [&](const row_range& range) {
      for (index_t i = range.begin; i < range.end; ++i) std::copy_n(src.row(rows(i, 0)), src.cols(), dst.row(i));
    });
  }

  template <class T>
  static void scatter_add(const host_context& ctx, batch_view<T> v, batch_view<const T> weights, index_t k,
                          row_index_view<host_space> rows, batch_view<const T> vk) {
    // The rows are distinct (one expert's), so threads never write the same row of v.
    for_row_ranges(ctx, rows.rows(), 2 * v.cols(), [&](const row_range& range) {
      for (index_t i = range.begin; i < range.end; ++i) {
        const index_t r = rows(i, 0);
        const T w = weights(r, k);
        T* out = v.row(r);
        const T* in = vk.row(i);
        for (index_t c = 0; c < v.cols(); ++c) out[c] += w * in[c];
      }
    });
  }
};

namespace detail {
// Indices outside [0, bound) are an argument_error. In a space the host cannot read, the space's
// backend finds the first bad index (expert_grouping<Space>::first_bad_row, which waits for the
// device) and one more read brings its value.
template <class Space>
void check_row_indices(const execution_context<Space>& ctx, const char* where, row_index_view<Space> rows,
                       index_t bound) {
  if (rows.cols() != 1)
    throw shape_error(concat(where, ": argument 'rows' has ", rows.cols(), " columns, expected 1"));
  if constexpr (Space::host_accessible) {
    for (index_t i = 0; i < rows.rows(); ++i)
      if (rows(i, 0) < 0 || rows(i, 0) >= bound)
        throw argument_error(concat(where, ": rows(", i, ", 0) = ", rows(i, 0), ", expected a row index in [0, ",
                                    bound, ")"));
  } else {
    const index_t bad = expert_grouping<Space>::first_bad_row(ctx, rows, bound);
    if (bad >= 0)
      throw argument_error(concat(where, ": rows(", bad, ", 0) is outside [0, ", bound,
                                  "), expected every row index in that range"));
  }
}
}  // namespace detail

/// Sort the selected (row, expert) pairs by expert. `selected` is (B, K); `row_index` has at least
/// as many rows as there are selected pairs (B * K always suffices) and one column; `offsets` has
/// K + 1 entries. Afterwards expert k's rows are row_index[offsets[k], offsets[k + 1]), ascending.
template <class Space>
void group_rows_by_expert(const execution_context<Space>& ctx, batch_view<const std::uint8_t, Space> selected,
                          batch_view<std::int32_t, Space> row_index, std::span<index_t> offsets) {
  constexpr const char* where = "ddm::group_rows_by_expert";
  if (offsets.size() != static_cast<std::size_t>(selected.cols() + 1))
    throw shape_error(ddm::concat(where, ": argument 'offsets' has ", offsets.size(), " entries, expected K + 1 = ",
                                     selected.cols() + 1));
  if (row_index.cols() != 1 || row_index.rows() < selected.rows() * selected.cols())
    throw shape_error(ddm::concat(where, ": argument 'row_index' has shape (", row_index.rows(), ", ",
                                     row_index.cols(), "), expected (>= B * K = ", selected.rows() * selected.cols(),
                                     ", 1)"));
  expert_grouping<Space>::group(ctx, selected, row_index, offsets);
}

/// dst(i, :) = src(rows(i, 0), :).
template <class U, class Space>
void gather_rows(const execution_context<Space>& ctx, batch_view<const std::type_identity_t<U>, Space> src,
                 row_index_view<Space> rows, batch_view<U, Space> dst) {
  constexpr const char* where = "ddm::gather_rows";
  ddm::require_shape(where, "dst", dst, rows.rows(), src.cols());
  detail::check_row_indices(ctx, where, rows, src.rows());
  if (rows.rows() != 0) expert_grouping<Space>::gather(ctx, src, rows, dst);
}

/// v(rows(i, 0), :) += weights(rows(i, 0), k) * vk(i, :). The rows must be distinct (each row
/// appears at most once per expert, which group_rows_by_expert guarantees).
template <class T, class Space>
void scatter_add_weighted(const execution_context<Space>& ctx, batch_view<T, Space> v,
                          batch_view<const std::type_identity_t<T>, Space> weights, index_t k,
                          row_index_view<Space> rows, batch_view<const std::type_identity_t<T>, Space> vk) {
  constexpr const char* where = "ddm::scatter_add_weighted";
  ddm::require_shape(where, "weights", weights, v.rows(), weights.cols());
  if (k < 0 || k >= weights.cols()) ddm::fail_argument(where, "k", k, "an expert index in [0, K)");
  ddm::require_shape(where, "vk", vk, rows.rows(), v.cols());
  detail::check_row_indices(ctx, where, rows, v.rows());
  if (rows.rows() != 0) expert_grouping<Space>::scatter_add(ctx, v, weights, k, rows, vk);
}

}  // namespace ddm
