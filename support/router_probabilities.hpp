#pragma once
// Router probabilities for the routing-policy tests: a (rows, k) softmax of Philox normal logits,
// row r's logits scaled by 0.3 + 3.7 r / rows, so that the batch runs from nearly uniform rows to
// rows where one expert holds almost all the mass, and every policy meets both kinds.

#include <cstdint>

#include <ddm/core/batch.hpp>
#include <ddm/core/rng.hpp>
#include <ddm/routing/softmax.hpp>

namespace ddm::test {

[[nodiscard]] inline batch<double> router_probabilities(index_t rows, index_t k, std::uint64_t seed) {
  const host_context ctx{};
  batch<double> logits(rows, k), p(rows, k);
  fill_normal(ctx, logits.view(), seed);
  for (index_t r = 0; r < rows; ++r)
    for (index_t e = 0; e < k; ++e) logits(r, e) *= 0.3 + 3.7 * static_cast<double>(r) / static_cast<double>(rows);
  softmax_rows(ctx, logits.cview(), 1.0, p.view());
  return p;
}

}  // namespace ddm::test
