#pragma once
// The router's logits as probabilities: a row-wise softmax with a temperature.
//
//     p_k = exp((l_k - max_j l_j) / temperature) / sum_i exp((l_i - max_j l_j) / temperature)
//
// Subtracting the row maximum keeps every exponent <= 0, so nothing overflows and the largest
// term is exactly 1 (the sum is in [1, K]). A NaN or infinite logit is a bug in the router, not
// a probability: it is reported as ddm::non_finite_error naming the router, the row and the expert.
//
// The per-row math (softmax_row) is a free function over raw pointers so that device kernels run
// the very same code; routing_softmax<Space> runs it over the rows of a batch in one memory space.

#include <cmath>
#include <limits>
#include <string_view>
#include <type_traits>

#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/parallel.hpp"

namespace ddm {

/// Softmax of one row of `num_experts` logits scaled by 1 / temperature, accumulated in double.
/// `probs` may be the same memory as `logits`. Returns -1, or the index of the first logit that
/// is NaN or infinite (then `probs` is left unspecified).
template <class T>
DDM_HOST_DEVICE inline int softmax_row(const T* logits, int num_experts, double inv_temperature, T* probs) noexcept {
  double top = -std::numeric_limits<double>::infinity();
  for (int k = 0; k < num_experts; ++k) {
    const double l = static_cast<double>(logits[k]);
    if (!(l - l == 0.0)) return k;  // l - l is NaN exactly when l is NaN or infinite
    if (l > top) top = l;
  }
  double sum = 0.0;
  for (int k = 0; k < num_experts; ++k) {
    const double e = std::exp((static_cast<double>(logits[k]) - top) * inv_temperature);
    sum += e;
    probs[k] = static_cast<T>(e);
  }
  const double inv_sum = 1.0 / sum;  // sum >= 1: the maximum contributes exp(0)
  for (int k = 0; k < num_experts; ++k) probs[k] = static_cast<T>(static_cast<double>(probs[k]) * inv_sum);
  return -1;
}

/// Where softmax_rows found a non-finite logit (row < 0: nowhere).
struct softmax_failure {
  index_t row = -1;
  int expert = -1;
  double value = 0.0;
};

/// Runs softmax_row over the rows of a batch in `Space`. Specialized per memory space (the CUDA
/// one lives under ddm/cuda/).
template <class Space>
struct routing_softmax {
  static_assert(sizeof(Space) == 0,
                "ddm: there is no routing softmax for this memory space. For ddm::cuda_space, include "
                "<ddm/cuda.hpp> and link ddm::cuda.");
};

template <>
struct routing_softmax<host_space> {
  template <class T>
  static softmax_failure run(const host_context& ctx, batch_view<const T> logits, double inv_temperature,
                             batch_view<T> probs) {
    const int k = static_cast<int>(logits.cols());
    // Each part stops at its first bad row; the first part (in row order) with one names it, as a
    // single pass over the rows would.
    const index_t bad = reduce_row_ranges(
        ctx, logits.rows(), 16 * index_t{k}, index_t{-1},
        [&](const row_range& range) {
          for (index_t r = range.begin; r < range.end; ++r)
            if (softmax_row(logits.row(r), k, inv_temperature, probs.row(r)) >= 0) return r;
          return index_t{-1};
        },
        [](index_t a, index_t b) { return a >= 0 ? a : b; });
    if (bad < 0) return {};
    const int expert = softmax_row(logits.row(bad), k, inv_temperature, probs.row(bad));
    return {bad, expert, static_cast<double>(logits(bad, expert))};
  }
};

/// probs = softmax(logits / temperature) row by row. `logits` and `probs` have the same (B, K)
/// shape and may be the same memory. `router_name` and `t` only serve the error message: a NaN
/// or infinite logit throws ddm::non_finite_error naming the router, the row and the expert.
template <class T, class Space>
void softmax_rows(const execution_context<Space>& ctx, batch_view<const std::type_identity_t<T>, Space> logits,
                  double temperature, batch_view<T, Space> probs, std::string_view router_name = "router",
                  double t = std::numeric_limits<double>::quiet_NaN()) {
  constexpr const char* where = "ddm::softmax_rows";
  if (!(temperature > 0.0) || !std::isfinite(temperature))
    ddm::fail_argument(where, "temperature", temperature, "a finite value > 0");
  ddm::require_same_shape(where, "probs", probs, logits);
  if (logits.cols() < 1)
    throw shape_error(ddm::concat(where, ": argument 'logits' has ", logits.cols(),
                                     " columns (experts), expected at least 1"));
  if (logits.rows() == 0) return;
  const softmax_failure bad = routing_softmax<Space>::run(ctx, logits, 1.0 / temperature, probs);
  if (bad.row >= 0) {
    if (std::isnan(t))
      throw non_finite_error(ddm::concat(where, ": router '", router_name, "' returned the non-finite logit ",
                                            bad.value, " for row ", bad.row, ", expert ", bad.expert));
    throw non_finite_error(ddm::concat(where, ": router '", router_name, "' returned the non-finite logit ",
                                          bad.value, " for row ", bad.row, ", expert ", bad.expert, " at t = ", t),
                           -1, t);
  }
}

}  // namespace ddm
