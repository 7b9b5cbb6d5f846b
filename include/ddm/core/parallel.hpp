#pragma once
// Splitting the rows of a host loop over the threads of the host context.
//
//   for_row_ranges(ctx, n, work_per_row, body)          body(row_range) over [0, n), each range
//                                                       once, on some thread
//   reduce_row_ranges(ctx, n, work_per_row, init, body, combine)
//                                                       combine(... combine(init, body(r0)), body(r1) ...)
//                                                       in range order
//
// The split depends only on n, the work and the context, never on which thread runs a range or
// how many threads the OpenMP runtime actually grants: ranges are numbered, dealt round-robin to
// the team, and partial results combined in range order. A body computes its rows exactly as a
// single thread would, so results are the same bits for any thread count.
//
// With one thread (the default), or a loop too small to pay for waking a team, the body runs
// once, inline, over all rows: the only cost of the option is the comparison that decides so,
// outside every loop. Without OpenMP (no -fopenmp) the pragma is inert and everything runs inline.
//
// Bodies must not throw (an exception cannot leave an OpenMP region): they report failures as
// values (a row index) that the caller turns into an error after the loop.

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace ddm {

/// True when ddm was compiled with OpenMP, so that host_context::threads > 1 uses more threads.
[[nodiscard]] constexpr bool host_threads_available() noexcept {
#if defined(_OPENMP)
  return true;
#else
  return false;
#endif
}

/// Rows [begin, end), the `part`-th of the split (0-based, < the number of parts).
struct row_range {
  index_t begin = 0;
  index_t end = 0;
  int part = 0;
  [[nodiscard]] index_t size() const noexcept { return end - begin; }
};

namespace detail {

DDM_COLD inline void fail_threads(int threads) {
  fail_argument("ddm::host_context", "threads", threads, "a thread count >= 1");
}

// The number of parts n rows of `work_per_row` each are split into (1: run inline).
[[nodiscard]] inline int row_parts(const host_context& ctx, index_t n, index_t work_per_row) {
  if (ctx.threads == 1) return 1;
  if (ctx.threads < 1) fail_threads(ctx.threads);
#if defined(_OPENMP)
  const index_t grain = std::max<index_t>(1, ctx.min_work_per_thread);
  const index_t work = n * std::max<index_t>(1, work_per_row);
  const index_t by_work = work / grain;
  return static_cast<int>(std::max<index_t>(1, std::min<index_t>({index_t{ctx.threads}, n, by_work})));
#else
  (void)n;
  (void)work_per_row;
  return 1;
#endif
}

// Part p of `parts` over [0, n), boundaries on multiples of `align` (the last part takes the rest).
[[nodiscard]] inline row_range part_of(index_t n, int parts, int p, index_t align) noexcept {
  const index_t units = (n + align - 1) / align;
  const index_t q = units / parts;
  const index_t r = units % parts;
  const index_t b = p * q + std::min<index_t>(p, r);
  const index_t e = b + q + (p < r ? 1 : 0);
  return {std::min(n, b * align), std::min(n, e * align), p};
}

template <class Body>
void run_parts(int parts, index_t n, index_t align, Body& body) {
#if defined(_OPENMP)
#pragma omp parallel num_threads(parts)
  {
    const int team = omp_get_num_threads();
    for (int p = omp_get_thread_num(); p < parts; p += team) {
      const row_range range = part_of(n, parts, p, align);
      if (range.begin < range.end) body(range);
    }
  }
#else
  for (int p = 0; p < parts; ++p) {
    const row_range range = part_of(n, parts, p, align);
    if (range.begin < range.end) body(range);
  }
#endif
}

}  // namespace detail

/// The number of parts for_row_ranges splits n rows into: a caller that needs per-part scratch
/// (one accumulator block per thread) sizes it with this before the loop.
[[nodiscard]] inline int row_parts(const host_context& ctx, index_t n, index_t work_per_row) {
  return detail::row_parts(ctx, n, work_per_row);
}

/// body(row_range) for contiguous ranges covering [0, n), each on one thread. `work_per_row` is
/// the cost of one row in scalar operations (it decides whether threads pay); range boundaries
/// fall on multiples of `align` (a kernel's row block).
template <class Body>
void for_row_ranges(const host_context& ctx, index_t n, index_t work_per_row, Body&& body, index_t align = 1) {
  if (n <= 0) return;
  const int parts = detail::row_parts(ctx, n, work_per_row);
  if (parts == 1) {
    body(row_range{0, n, 0});
    return;
  }
  detail::run_parts(parts, n, std::max<index_t>(1, align), body);
}

/// Like for_row_ranges, when a caller has already chosen `parts` (with row_parts) to size scratch.
template <class Body>
void for_row_parts(int parts, index_t n, Body&& body, index_t align = 1) {
  if (n <= 0) return;
  if (parts <= 1) {
    body(row_range{0, n, 0});
    return;
  }
  detail::run_parts(parts, n, std::max<index_t>(1, align), body);
}

/// combine(...combine(combine(init, body(range 0)), body(range 1))..., body(range P - 1)): the
/// partial results of the ranges folded in range order on the calling thread.
template <class R, class Body, class Combine>
[[nodiscard]] R reduce_row_ranges(const host_context& ctx, index_t n, index_t work_per_row, R init, Body&& body,
                                  Combine&& combine) {
  if (n <= 0) return init;
  const int parts = detail::row_parts(ctx, n, work_per_row);
  if (parts == 1) return combine(std::move(init), body(row_range{0, n, 0}));
  // A struct, not R itself: std::vector<bool> packs bits, and parts writing neighbouring bits race.
  struct slot {
    R value;
  };
  std::vector<slot> partial(static_cast<std::size_t>(parts), slot{init});
  auto run = [&](const row_range& range) { partial[static_cast<std::size_t>(range.part)].value = body(range); };
  detail::run_parts(parts, n, 1, run);
  // parts <= n, so every part holds at least one row.
  R result = std::move(init);
  for (auto& s : partial) result = combine(std::move(result), std::move(s.value));
  return result;
}

}  // namespace ddm
