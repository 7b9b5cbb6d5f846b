#pragma once
// Random probe vectors for the stochastic Jacobian estimators, drawn from the counter-based
// Philox generator so that an estimate is a pure function of (seed, stream): the same on every
// run, on host and device, and independent of the batch's stride.
//
// Element (r, c) of probe `stream` is variate number r * D + c of (seed, stream), like
// ddm::fill_normal. Both kinds have E[z] = 0 and E[z z^T] = I, which is all Hutchinson's
// estimator needs. With M = J^T J, one probe's ||J z||^2 = z^T M z has variance
// 2 sum_{i != j} M_ij^2 for Rademacher probes and 2 ||M||_F^2 for Gaussian ones: Rademacher
// probes drop the diagonal's contribution (exact for diagonal M), Gaussian probes are rotation
// invariant.

#include <cstdint>

#include "ddm/core/batch.hpp"
#include "ddm/core/config.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/parallel.hpp"
#include "ddm/core/rng.hpp"

namespace ddm::diagnostics {

enum class probe_kind {
  rademacher,  ///< each value +1 or -1 with probability 1/2
  gaussian,    ///< each value standard normal
};

[[nodiscard]] constexpr const char* to_string(probe_kind k) noexcept {
  return k == probe_kind::rademacher ? "rademacher" : "gaussian";
}

/// Rademacher variate number n of (seed, stream): the sign of a Philox uniform.
DDM_HOST_DEVICE constexpr double rademacher(std::uint64_t seed, std::uint64_t stream, std::uint64_t n) noexcept {
  return philox4x32::uniform(seed, stream, n) < 0.5 ? -1.0 : 1.0;
}

/// Fill z with probe values of the given kind: z(r, c) = variate r * cols + c of (seed, stream).
template <class T>
void fill_probe(const host_context& ctx, batch_view<T> z, probe_kind kind, std::uint64_t seed,
                std::uint64_t stream) {
  if (kind == probe_kind::gaussian) {
    ddm::fill_normal(ctx, z, seed, stream);
    return;
  }
  // Counter-based: every value depends on its index only, so any split of the rows gives the same bits.
  for_row_ranges(ctx, z.rows(), z.cols(), [&](const row_range& range) {
    for (index_t r = range.begin; r < range.end; ++r) {
      T* p = z.row(r);
      const auto base = static_cast<std::uint64_t>(r) * static_cast<std::uint64_t>(z.cols());
      for (index_t c = 0; c < z.cols(); ++c)
        p[c] = static_cast<T>(rademacher(seed, stream, base + static_cast<std::uint64_t>(c)));
    }
  });
}

}  // namespace ddm::diagnostics
