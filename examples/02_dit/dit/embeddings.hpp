#pragma once
// The two fixed sinusoidal embeddings of DiT, computed on the host exactly as the reference
// code computes them (each convention here is one that is easy to get backwards).

#include <cmath>
#include <span>
#include <vector>

#include <ddm/core/error.hpp>

#include "dit/backend.hpp"

namespace dit {

/// The frequencies of the timestep embedding: freq_k = exp(-ln(max_period) * k / half), k = 0..half-1,
/// half = dim / 2, in float as PyTorch computes them for float32 tensors.
[[nodiscard]] inline std::vector<float> timestep_frequencies(index_t dim, double max_period = 10000.0) {
  if (dim <= 0 || dim % 2 != 0)
    ddm::fail_argument("dit::timestep_frequencies", "dim", dim, "a positive even number");
  const index_t half = dim / 2;
  const auto neg_log = static_cast<float>(-std::log(max_period));
  std::vector<float> freqs(static_cast<std::size_t>(half));
  for (index_t k = 0; k < half; ++k)
    freqs[static_cast<std::size_t>(k)] = std::exp(neg_log * static_cast<float>(k) / static_cast<float>(half));
  return freqs;
}

/// Timestep embedding (DiT's TimestepEmbedder.timestep_embedding): for half = dim / 2,
/// freq_k = exp(-ln(max_period) * k / half), k = 0..half-1, and row r is
/// [cos(t_r * freq) | sin(t_r * freq)] -- cosine first. Arithmetic is float, as PyTorch does it
/// for float32 tensors, so that large t (up to 1000) rounds the same way.
inline void timestep_embedding(std::span<const float> t, index_t dim, std::span<float> out,
                               double max_period = 10000.0) {
  if (dim <= 0 || dim % 2 != 0) ddm::fail_argument("dit::timestep_embedding", "dim", dim, "a positive even number");
  if (out.size() != t.size() * static_cast<std::size_t>(dim))
    throw ddm::shape_error(ddm::concat("dit::timestep_embedding: out has ", out.size(), " values, expected ",
                                               t.size(), " x ", dim));
  const index_t half = dim / 2;
  const auto freqs = timestep_frequencies(dim, max_period);
  for (std::size_t r = 0; r < t.size(); ++r) {
    float* row = out.data() + r * static_cast<std::size_t>(dim);
    for (index_t k = 0; k < half; ++k) {
      const float arg = t[r] * freqs[static_cast<std::size_t>(k)];
      row[k] = static_cast<float>(std::cos(static_cast<double>(arg)));
      row[half + k] = static_cast<float>(std::sin(static_cast<double>(arg)));
    }
  }
}

/// The fixed 2D sin-cos position embedding of DiT / MAE (get_2d_sincos_pos_embed), (G*G, D) row
/// major, computed in double and rounded to float as the reference does (numpy float64, then
/// .float()). With w_k = 10000^(-k / (D/4)), token n = i*G + j (i = patch row, j = patch column)
/// is [sin(j w) | cos(j w) | sin(i w) | cos(i w)]: the column index comes first (the reference's
/// meshgrid puts w first) and sine precedes cosine, unlike the timestep embedding.
[[nodiscard]] inline std::vector<float> sincos_pos_embed_2d(index_t dim, index_t grid) {
  if (dim <= 0 || dim % 4 != 0)
    ddm::fail_argument("dit::sincos_pos_embed_2d", "dim", dim, "a positive multiple of 4");
  if (grid <= 0) ddm::fail_argument("dit::sincos_pos_embed_2d", "grid", grid, "> 0");
  const index_t quarter = dim / 4;
  std::vector<double> omega(static_cast<std::size_t>(quarter));
  for (index_t k = 0; k < quarter; ++k)
    omega[static_cast<std::size_t>(k)] =
        1.0 / std::pow(10000.0, static_cast<double>(k) / static_cast<double>(quarter));
  std::vector<float> out(static_cast<std::size_t>(grid * grid * dim));
  for (index_t i = 0; i < grid; ++i) {
    for (index_t j = 0; j < grid; ++j) {
      float* row = out.data() + (i * grid + j) * dim;
      for (index_t k = 0; k < quarter; ++k) {
        const double wj = static_cast<double>(j) * omega[static_cast<std::size_t>(k)];
        const double wi = static_cast<double>(i) * omega[static_cast<std::size_t>(k)];
        row[k] = static_cast<float>(std::sin(wj));
        row[quarter + k] = static_cast<float>(std::cos(wj));
        row[2 * quarter + k] = static_cast<float>(std::sin(wi));
        row[3 * quarter + k] = static_cast<float>(std::cos(wi));
      }
    }
  }
  return out;
}

}  // namespace dit
