#pragma once
// The analytic DDM: a decentralized diffusion model whose experts, router and data are known in
// closed form. The reference problem for tests and examples.
//
// K clusters in D dimensions; cluster k is a mixture of isotropic Gaussians N(mu_j, s_j^2 I) with
// weights pi_kj (summing to 1 in the cluster), and has prior P_k. The data is the mixture of all
// components with overall weights w_j = P_k pi_kj.
//
//   expert(k)        the exact rectified-flow velocity of cluster k's data alone (an expert
//                    trained to perfection on its cluster)
//   mixture_field()  the exact velocity of the whole data (a perfect monolithic model)
//   router(tau)      the exact posterior p(k | x_t) with temperature tau (tau = 1: perfect;
//                    tau > 1: under-confident, like a trained classifier)
//   sample_data(n)   true data, deterministic in (seed, row)
// By the DDM decomposition theorem, sum_k p(k | x_t) v_k(x_t, t) is the mixture's velocity: the
// full ensemble with router(1) reproduces mixture_field() exactly.
//
// Defaults (analytic_ddm_options): K = 8 clusters like Paris, D = 8 dimensions, 4 components per
// cluster; cluster centres ~ N(0, 2^2 I), component means ~ centre + N(0, 0.6^2 I), scales uniform
// in [0.15, 0.35], cluster priors and in-cluster weights uniform in [1, 2] before normalization
// (clusters of unequal size, as k-means clusters of real data are). One velocity evaluation costs
// O(J D) per row (J = 32 components), so thousands of samples take well under a second.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/parallel.hpp"
#include "ddm/core/rng.hpp"
#include "ddm/routing/ensemble.hpp"
#include "ddm/synthetic/gaussian_mixture.hpp"

namespace ddm::synthetic {

/// How analytic_ddm draws its components from a seed.
struct analytic_ddm_options {
  int clusters = 8;                ///< K
  int dim = 8;                     ///< D
  int components_per_cluster = 4;  ///< isotropic Gaussians per cluster
  double cluster_spread = 2.0;     ///< std. dev. of the cluster centres around 0, per coordinate
  double component_spread = 0.6;   ///< std. dev. of a component mean around its cluster centre
  double min_scale = 0.15;         ///< component std. dev. s_j ~ uniform [min_scale, max_scale]
  double max_scale = 0.35;
  double max_weight_ratio = 2.0;   ///< priors and weights ~ uniform [1, max_weight_ratio], normalized
  std::uint64_t seed = 2026;
};

/// An explicit mixture: component j has mean means[j * dim .. j * dim + dim), standard deviation
/// scales[j], weight weights[j] (> 0, normalized over all components) and belongs to cluster
/// cluster[j] in [0, K); every cluster needs at least one component.
struct mixture_spec {
  int dim = 0;
  std::vector<double> means;
  std::vector<double> scales;
  std::vector<double> weights;
  std::vector<int> cluster;
};

/// How the host kernels of a field or router over float batches compute.
enum class arithmetic {
  /// In double, rounded once to the batch's type: float and double batches give the same values up
  /// to that rounding, and the host matches the device's per-row code (the default).
  exact,
  /// In the batch's type where the work is O(B J D): squared distances in float within tiles of 64
  /// columns (the tiles' partial sums added in double), the mean term in float; the O(B J) log
  /// terms, normalization and coefficients stay in double. Like for like with a float32 framework;
  /// for double batches it is `exact`. docs/performance.md gives the measured difference.
  value_type,
};

namespace detail {

// Blocking of the host kernels (see squared_distances below).
inline constexpr int block_rows = 4;        // rows per block
inline constexpr index_t block_cols = 512;  // columns per block of the mean term
inline constexpr int chunk = 8;             // components per chunk: one 64-byte vector of doubles

// The immutable parameters, shared by the analytic DDM and every field or router made from it.
struct analytic_ddm_data {
  int clusters = 0;
  int dim = 0;
  int components = 0;
  std::vector<double> means;             // (J, D), components grouped by cluster
  std::vector<double> means_t;           // (D, J) the same, transposed for the host kernels
  std::vector<double> cluster_means_t;   // cluster k's (D, J_k) block at D * cluster_begin[k]: an
                                         // expert's means, contiguous (the router reads means_t)
  std::vector<float> means_f;            // the three arrays above in float, for arithmetic::value_type
  std::vector<float> means_t_f;
  std::vector<float> cluster_means_t_f;
  std::vector<double> scales;            // (J)
  std::vector<double> weights;           // (J) overall, sum 1
  std::vector<double> log_weights;       // (J) overall
  std::vector<double> log_cluster_weights;  // (J) log pi_kj, within the component's cluster
  std::vector<int> cluster_of;           // (J)
  std::vector<int> cluster_begin;        // (K + 1)
  std::vector<double> priors;            // (K)
  std::vector<double> centroids;         // (K, D) cluster means
  std::vector<double> mean;              // (D)

  // (D, D), built on first use: it costs O(J D^2) time and D^2 memory (32 GiB at D = 65536),
  // which sampling never needs, so a high-dimensional model stays cheap to construct.
  [[nodiscard]] const std::vector<double>& covariance() const {
    std::call_once(covariance_once_, [this] { build_covariance_(); });
    return covariance_;
  }

  [[nodiscard]] mixture_view whole() const noexcept {
    return {means.data(), scales.data(), log_weights.data(), components, dim};
  }
  [[nodiscard]] mixture_view cluster(int k) const noexcept {
    const auto b = static_cast<std::size_t>(cluster_begin[static_cast<std::size_t>(k)]);
    return {means.data() + b * static_cast<std::size_t>(dim), scales.data() + b, log_cluster_weights.data() + b,
            cluster_begin[static_cast<std::size_t>(k) + 1] - cluster_begin[static_cast<std::size_t>(k)], dim};
  }

 private:
  // C = sum_j w_j (s_j^2 I + (mu_j - m)(mu_j - m)^T), centred for accuracy.
  void build_covariance_() const {
    const auto d = static_cast<std::size_t>(dim);
    covariance_.assign(d * d, 0.0);
    for (std::size_t j = 0; j < static_cast<std::size_t>(components); ++j) {
      const double w = weights[j];
      for (std::size_t a = 0; a < d; ++a) {
        const double da = means[j * d + a] - mean[a];
        covariance_[a * d + a] += w * scales[j] * scales[j];
        for (std::size_t b = 0; b < d; ++b) covariance_[a * d + b] += w * da * (means[j * d + b] - mean[b]);
      }
    }
  }

  mutable std::once_flag covariance_once_;
  mutable std::vector<double> covariance_;
};

inline std::shared_ptr<const analytic_ddm_data> build_analytic_ddm(const mixture_spec& spec) {
  constexpr const char* where = "ddm::synthetic::analytic_ddm";
  if (spec.dim < 1) ddm::fail_argument(where, "spec.dim", spec.dim, ">= 1");
  const std::size_t j_count = spec.scales.size();
  const auto d = static_cast<std::size_t>(spec.dim);
  if (j_count == 0) throw argument_error(ddm::concat(where, ": the mixture has no components, expected >= 1"));
  if (spec.means.size() != j_count * d || spec.weights.size() != j_count || spec.cluster.size() != j_count)
    throw shape_error(ddm::concat(where, ": spec has ", spec.means.size(), " mean values, ", j_count,
                                          " scales, ", spec.weights.size(), " weights and ", spec.cluster.size(),
                                          " cluster labels, expected J * D = ", j_count * d, ", J, J and J"));
  int k_count = 0;
  for (std::size_t j = 0; j < j_count; ++j) {
    if (!(spec.scales[j] > 0.0) || !std::isfinite(spec.scales[j]))
      throw argument_error(ddm::concat(where, ": spec.scales[", j, "] = ", spec.scales[j], ", expected a finite value > 0"));
    if (!(spec.weights[j] > 0.0) || !std::isfinite(spec.weights[j]))
      throw argument_error(ddm::concat(where, ": spec.weights[", j, "] = ", spec.weights[j], ", expected a finite value > 0"));
    if (spec.cluster[j] < 0)
      throw argument_error(ddm::concat(where, ": spec.cluster[", j, "] = ", spec.cluster[j], ", expected >= 0"));
    k_count = std::max(k_count, spec.cluster[j] + 1);
  }
  for (double m : spec.means)
    if (!std::isfinite(m)) throw argument_error(ddm::concat(where, ": spec.means contains ", m, ", expected finite values"));

  auto data = std::make_shared<analytic_ddm_data>();
  data->clusters = k_count;
  data->dim = spec.dim;
  data->components = static_cast<int>(j_count);
  // Group components by cluster (stable), so that an expert's components are contiguous.
  std::vector<std::size_t> order(j_count);
  for (std::size_t j = 0; j < j_count; ++j) order[j] = j;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return spec.cluster[a] < spec.cluster[b]; });
  double total = 0.0;
  for (double w : spec.weights) total += w;
  data->cluster_begin.assign(static_cast<std::size_t>(k_count) + 1, 0);
  data->priors.assign(static_cast<std::size_t>(k_count), 0.0);
  for (std::size_t i = 0; i < j_count; ++i) {
    const std::size_t j = order[i];
    const auto k = static_cast<std::size_t>(spec.cluster[j]);
    data->means.insert(data->means.end(), spec.means.begin() + static_cast<std::ptrdiff_t>(j * d),
                       spec.means.begin() + static_cast<std::ptrdiff_t>((j + 1) * d));
    data->scales.push_back(spec.scales[j]);
    data->weights.push_back(spec.weights[j] / total);
    data->log_weights.push_back(std::log(spec.weights[j] / total));
    data->cluster_of.push_back(static_cast<int>(k));
    data->cluster_begin[k + 1] += 1;
    data->priors[k] += spec.weights[j] / total;
  }
  for (std::size_t k = 0; k < static_cast<std::size_t>(k_count); ++k) {
    if (data->cluster_begin[k + 1] == 0)
      throw argument_error(ddm::concat(where, ": cluster ", k, " has no component, expected clusters 0..",
                                               k_count - 1, " to own at least one each"));
    data->cluster_begin[k + 1] += data->cluster_begin[k];
  }
  // (D, J) and 4 chunks less one of zeros: squared_distances reads whole groups of chunks.
  data->means_t.assign(j_count * d + 4 * chunk - 1, 0.0);
  data->cluster_means_t.assign(j_count * d + 4 * chunk - 1, 0.0);
  for (std::size_t j = 0; j < j_count; ++j)
    for (std::size_t c = 0; c < d; ++c) data->means_t[c * j_count + j] = data->means[j * d + c];
  for (std::size_t k = 0; k < static_cast<std::size_t>(k_count); ++k) {
    const auto begin = static_cast<std::size_t>(data->cluster_begin[k]);
    const auto width = static_cast<std::size_t>(data->cluster_begin[k + 1]) - begin;
    double* block = data->cluster_means_t.data() + d * begin;
    for (std::size_t j = 0; j < width; ++j)
      for (std::size_t c = 0; c < d; ++c) block[c * width + j] = data->means[(begin + j) * d + c];
  }
  data->means_f.assign(data->means.begin(), data->means.end());
  data->means_t_f.assign(data->means_t.begin(), data->means_t.end());
  data->cluster_means_t_f.assign(data->cluster_means_t.begin(), data->cluster_means_t.end());
  data->log_cluster_weights.resize(j_count);
  data->centroids.assign(static_cast<std::size_t>(k_count) * d, 0.0);
  data->mean.assign(d, 0.0);
  for (std::size_t j = 0; j < j_count; ++j) {
    const auto k = static_cast<std::size_t>(data->cluster_of[j]);
    const double pi = data->weights[j] / data->priors[k];
    data->log_cluster_weights[j] = std::log(pi);
    for (std::size_t c = 0; c < d; ++c) {
      data->centroids[k * d + c] += pi * data->means[j * d + c];
      data->mean[c] += data->weights[j] * data->means[j * d + c];
    }
  }
  return data;
}

inline mixture_spec draw_mixture_spec(const analytic_ddm_options& o) {
  constexpr const char* where = "ddm::synthetic::analytic_ddm";
  if (o.clusters < 1) ddm::fail_argument(where, "options.clusters", o.clusters, ">= 1");
  if (o.dim < 1) ddm::fail_argument(where, "options.dim", o.dim, ">= 1");
  if (o.components_per_cluster < 1)
    ddm::fail_argument(where, "options.components_per_cluster", o.components_per_cluster, ">= 1");
  if (!(o.cluster_spread >= 0.0) || !std::isfinite(o.cluster_spread))
    ddm::fail_argument(where, "options.cluster_spread", o.cluster_spread, "a finite value >= 0");
  if (!(o.component_spread >= 0.0) || !std::isfinite(o.component_spread))
    ddm::fail_argument(where, "options.component_spread", o.component_spread, "a finite value >= 0");
  if (!(o.min_scale > 0.0 && o.min_scale <= o.max_scale && std::isfinite(o.max_scale)))
    ddm::fail_argument(where, "options.min_scale", o.min_scale, "0 < min_scale <= max_scale < inf");
  if (!(o.max_weight_ratio >= 1.0) || !std::isfinite(o.max_weight_ratio))
    ddm::fail_argument(where, "options.max_weight_ratio", o.max_weight_ratio, "a finite value >= 1");
  // One Philox stream per kind of parameter: changing one option does not reshuffle the others.
  constexpr std::uint64_t centre_stream = 0xC0FFEE01, offset_stream = 0xC0FFEE02, scale_stream = 0xC0FFEE03,
                          weight_stream = 0xC0FFEE04, prior_stream = 0xC0FFEE05;
  const auto k_count = static_cast<std::uint64_t>(o.clusters);
  const auto m_count = static_cast<std::uint64_t>(o.components_per_cluster);
  const auto d = static_cast<std::uint64_t>(o.dim);
  mixture_spec spec;
  spec.dim = o.dim;
  for (std::uint64_t k = 0; k < k_count; ++k) {
    const double prior = 1.0 + (o.max_weight_ratio - 1.0) * philox4x32::uniform(o.seed, prior_stream, k);
    std::vector<double> w(m_count);
    double w_sum = 0.0;
    for (std::uint64_t i = 0; i < m_count; ++i) {
      w[i] = 1.0 + (o.max_weight_ratio - 1.0) * philox4x32::uniform(o.seed, weight_stream, k * m_count + i);
      w_sum += w[i];
    }
    for (std::uint64_t i = 0; i < m_count; ++i) {
      const std::uint64_t j = k * m_count + i;
      for (std::uint64_t c = 0; c < d; ++c)
        spec.means.push_back(o.cluster_spread * philox4x32::normal(o.seed, centre_stream, k * d + c) +
                             o.component_spread * philox4x32::normal(o.seed, offset_stream, j * d + c));
      spec.scales.push_back(o.min_scale + (o.max_scale - o.min_scale) * philox4x32::uniform(o.seed, scale_stream, j));
      spec.weights.push_back(prior * w[i] / w_sum);
      spec.cluster.push_back(static_cast<int>(k));
    }
  }
  return spec;
}

inline void check_time(const char* where, double t) {
  if (!(t >= 0.0 && t <= 1.0)) ddm::fail_argument(where, "t", t, "a time in [0, 1]");
}

// Host kernels: the per-row math of gaussian_mixture.hpp for a whole batch at once. Per row the
// work is O(J D); the row functions run it as J dependent sums of D terms each, which leaves the
// core waiting on one addition at a time and re-reads every mean for every row. Here the columns
// go in tiles whose means stay in cache while every block of rows passes over them, and within a
// tile the sums of a block of rows and a group of components advance together, the innermost loop
// over 8 components (one vector) with the accumulators in registers. Every sum still adds its
// terms in the same order as the row functions, so the results are the same values (tested).

// The row stride of the kernels' distance arrays: components rounded up to whole chunk groups
// (the padding lanes receive distances to whatever follows in the transposed means; ignored).
[[nodiscard]] constexpr int chunk_group(int n) noexcept { return n <= chunk ? 1 : (n <= 2 * chunk ? 2 : 4); }
[[nodiscard]] constexpr int padded_components(int n) noexcept {
  const int w = chunk * chunk_group(n);
  return (n + w - 1) / w * w;
}

// d2 rows i < R (stride `stride`) += |x_i[c] - (1 - t) mu_{j0 + j}[c]|^2 summed over c in [c0, c1),
// in order, for the n components, G chunks of 8 at a time: R x G vectors of accumulators. Out of
// line: inlined into squared_distances, gcc 12 reloads the means for every row in the inner loop
// and the expert kernel ran 2x slower (measured at B = D = 1024).
// M is the arithmetic: double continues the running sums in d2; float sums the tile's columns
// from zero and adds that partial sum to d2 in double, so that the float rounding error grows with
// the 64 columns of a tile, not with D.
template <int R, int G, class T, class M>
DDM_NOINLINE void squared_distances_tile(const T* const* x, int c0, int c1, const M* means_t, int ld, int j0, int n,
                            double shrink, double* d2, int stride) {
  constexpr int width = G * chunk;
  constexpr bool running = std::is_same_v<M, double>;
  const auto sh = static_cast<M>(shrink);
  for (int jb = 0; jb < n; jb += width) {
    M acc[R][width];
    for (int i = 0; i < R; ++i)
      for (int jj = 0; jj < width; ++jj) acc[i][jj] = running ? static_cast<M>(d2[i * stride + jb + jj]) : M(0);
    const M* mu = means_t + static_cast<std::ptrdiff_t>(c0) * ld + j0 + jb;
    for (int c = c0; c < c1; ++c, mu += ld)
      for (int i = 0; i < R; ++i) {
        const M xc = static_cast<M>(x[i][c]);
        for (int jj = 0; jj < width; ++jj) {
          const M d = xc - sh * mu[jj];
          acc[i][jj] += d * d;
        }
      }
    for (int i = 0; i < R; ++i)
      for (int jj = 0; jj < width; ++jj) {
        if constexpr (running) d2[i * stride + jb + jj] = acc[i][jj];
        else d2[i * stride + jb + jj] += static_cast<double>(acc[i][jj]);
      }
  }
}

#if defined(__GNUC__) || defined(__clang__)
// The float tile in explicit vectors of 8 floats (the chunk): written as the loop above with one
// chunk, gcc 12 vectorizes the loop over columns as an in-order reduction instead, with scalar adds
// and strided loads of the means (under callgrind, B = 64, D = 4096: 31.3M instructions against
// 11.2M for the double tile; this one 6.7M). The same sums in the same order, one lane per component.
template <int R, int G, class T>
  requires std::is_same_v<T, float>
DDM_NOINLINE void squared_distances_tile_f32(const T* const* x, int c0, int c1, const float* means_t, int ld, int j0,
                                             int n, double shrink, double* d2, int stride) {
  typedef float vec __attribute__((vector_size(chunk * sizeof(float))));
  constexpr int width = G * chunk;
  const auto sh = static_cast<float>(shrink);
  for (int jb = 0; jb < n; jb += width) {
    vec acc[R][G] = {};
    const float* mu = means_t + static_cast<std::ptrdiff_t>(c0) * ld + j0 + jb;
    for (int c = c0; c < c1; ++c, mu += ld) {
      vec m[G];
      for (int g = 0; g < G; ++g) std::memcpy(&m[g], mu + g * chunk, sizeof(vec));
      for (int i = 0; i < R; ++i) {
        const float xc = x[i][c];
        for (int g = 0; g < G; ++g) {
          const vec d = xc - sh * m[g];
          acc[i][g] += d * d;
        }
      }
    }
    for (int i = 0; i < R; ++i)
      for (int g = 0; g < G; ++g)
        for (int jj = 0; jj < chunk; ++jj) d2[i * stride + jb + g * chunk + jj] += static_cast<double>(acc[i][g][jj]);
  }
}
#endif

template <int G, class T, class M>
void squared_distances_tile_rows(int rows, const T* const* x, int c0, int c1, const M* means_t, int ld, int j0,
                                 int n, double shrink, double* d2, int stride) {
  static_assert(block_rows == 4, "squared_distances dispatches blocks of 1 to 4 rows");
#if defined(__GNUC__) || defined(__clang__)
  // One chunk (an expert's few components) only: with 2 or 4 chunks gcc vectorizes the loop above
  // well, and better than this (the router's tile: 20.6M against 35.2M instructions).
  if constexpr (G == 1 && std::is_same_v<M, float> && std::is_same_v<T, float>) {
    switch (rows) {
      case 1: squared_distances_tile_f32<1, G>(x, c0, c1, means_t, ld, j0, n, shrink, d2, stride); break;
      case 2: squared_distances_tile_f32<2, G>(x, c0, c1, means_t, ld, j0, n, shrink, d2, stride); break;
      case 3: squared_distances_tile_f32<3, G>(x, c0, c1, means_t, ld, j0, n, shrink, d2, stride); break;
      default: squared_distances_tile_f32<4, G>(x, c0, c1, means_t, ld, j0, n, shrink, d2, stride); break;
    }
    return;
  }
#endif
  switch (rows) {
    case 1: squared_distances_tile<1, G>(x, c0, c1, means_t, ld, j0, n, shrink, d2, stride); break;
    case 2: squared_distances_tile<2, G>(x, c0, c1, means_t, ld, j0, n, shrink, d2, stride); break;
    case 3: squared_distances_tile<3, G>(x, c0, c1, means_t, ld, j0, n, shrink, d2, stride); break;
    default: squared_distances_tile<4, G>(x, c0, c1, means_t, ld, j0, n, shrink, d2, stride); break;
  }
}

// d2(r, j) = |x_r - (1 - t) mu_{j0 + j}|^2 at d2[r * padded_components(n) + j], for every row of x
// and n components of the transposed means (D, ld).
template <class T, class M>
void squared_distances(batch_view<const T> x, const M* means_t, int ld, int j0, int n, double t, double* d2) {
  constexpr int tile = 64;  // 64 columns of 32 components: 16 KiB of means
  const int stride = padded_components(n);
  const int group = chunk_group(n);
  const double shrink = 1.0 - t;
  const auto dim = static_cast<int>(x.cols());
  for (index_t i = 0; i < x.rows() * stride; ++i) d2[i] = 0.0;
  auto block = [&](index_t r0, int c0, int c1) {
    const int rows = static_cast<int>(std::min<index_t>(block_rows, x.rows() - r0));
    const T* xs[block_rows];
    for (int i = 0; i < rows; ++i) xs[i] = x.row(r0 + i);
    double* out = d2 + r0 * stride;
    if (group == 1) squared_distances_tile_rows<1>(rows, xs, c0, c1, means_t, ld, j0, n, shrink, out, stride);
    else if (group == 2) squared_distances_tile_rows<2>(rows, xs, c0, c1, means_t, ld, j0, n, shrink, out, stride);
    else squared_distances_tile_rows<4>(rows, xs, c0, c1, means_t, ld, j0, n, shrink, out, stride);
  };
  if (group == 1) {
    // Few components (an expert of the analytic DDM): little arithmetic per value of x, so x is
    // streamed row block by row block, and the few means each block needs come from cache.
    for (index_t r0 = 0; r0 < x.rows(); r0 += block_rows)
      for (int c0 = 0; c0 < dim; c0 += tile) block(r0, c0, std::min(dim, c0 + tile));
  } else {
    // Many components (the router): the means are the larger operand; each tile of them is read
    // from memory once and used by every row.
    for (int c0 = 0; c0 < dim; c0 += tile)
      for (index_t r0 = 0; r0 < x.rows(); r0 += block_rows) block(r0, c0, std::min(dim, c0 + tile));
  }
}

// What the log terms of component_log_term need per component at time t, computed once per call
// instead of once per row: var_j and (D / 2) log var_j (the same expressions, so the same values).
struct component_time_terms {
  std::vector<double> var;
  std::vector<double> half_d_log_var;

  void compute(const mixture_view& m, double t) {
    var.resize(static_cast<std::size_t>(m.components));
    half_d_log_var.resize(var.size());
    for (int j = 0; j < m.components; ++j) {
      const double s = m.scales[j];
      const double v = (1.0 - t) * (1.0 - t) * s * s + t * t;
      var[static_cast<std::size_t>(j)] = v;
      half_d_log_var[static_cast<std::size_t>(j)] = 0.5 * m.dim * std::log(v);
    }
  }
};

// The log terms of component_log_term from squared distances, in place (one row's components).
inline void log_terms_from_distances(const mixture_view& m, const component_time_terms& tt, double* d2) {
  for (int j = 0; j < m.components; ++j) {
    const auto u = static_cast<std::size_t>(j);
    d2[j] = m.log_weights[j] - 0.5 * d2[j] / tt.var[u] - tt.half_d_log_var[u];
  }
}

// v_r = abar_r x_r - sum_j coef[r * stride + j] mu_j for every row (the sum over j in order), in
// column blocks of block_cols; `acc` holds block_rows * block_cols doubles.
// M is the arithmetic and `means` the (J, D) means in M (m.means itself for double).
template <class T, class M>
void mean_term(const mixture_view& m, const M* means, batch_view<const T> x, batch_view<T> v, const double* abar,
               const double* coef, int stride, M* acc) {
  const int n = m.components;
  auto block = [&](index_t r0, index_t c0) {
    const index_t width = std::min<index_t>(block_cols, m.dim - c0);
    const int rows = static_cast<int>(std::min<index_t>(block_rows, x.rows() - r0));
    for (int i = 0; i < rows; ++i) {
      M* a = acc + i * block_cols;
      const T* xi = x.row(r0 + i) + c0;
      const auto ab = static_cast<M>(abar[r0 + i]);  // a local: abar might alias acc for all the compiler knows
      DDM_PRAGMA_IVDEP
      for (index_t c = 0; c < width; ++c) a[c] = ab * static_cast<M>(xi[c]);
    }
    for (int j = 0; j < n; ++j) {
      const M* mu = means + static_cast<std::ptrdiff_t>(j) * m.dim + c0;
      for (int i = 0; i < rows; ++i) {
        const auto w = static_cast<M>(coef[(r0 + i) * stride + j]);
        M* a = acc + i * block_cols;
        DDM_PRAGMA_IVDEP
        for (index_t c = 0; c < width; ++c) a[c] -= w * mu[c];
      }
    }
    for (int i = 0; i < rows; ++i) {
      const M* a = acc + i * block_cols;
      T* vi = v.row(r0 + i) + c0;
      DDM_PRAGMA_IVDEP
      for (index_t c = 0; c < width; ++c) vi[c] = static_cast<T>(a[c]);
    }
  };
  if (n <= chunk) {
    // Few components: their means stay in cache anyway; stream x and v row block by row block.
    for (index_t r0 = 0; r0 < x.rows(); r0 += block_rows)
      for (index_t c0 = 0; c0 < m.dim; c0 += block_cols) block(r0, c0);
  } else {
    // Many components (the mixture field): read each column block of the means once for all rows.
    for (index_t c0 = 0; c0 < m.dim; c0 += block_cols)
      for (index_t r0 = 0; r0 < x.rows(); r0 += block_rows) block(r0, c0);
  }
}

}  // namespace detail

/// The exact rectified-flow velocity of a mixture of isotropic Gaussians (one cluster of the
/// analytic DDM, or all of it). A host velocity field for float and double (arithmetic in
/// double), with an exact jvp.
class gaussian_mixture_field {
 public:
  /// `ctx` gives the threads its rows are split over (each row computed as one thread would).
  gaussian_mixture_field(std::shared_ptr<const detail::analytic_ddm_data> data, mixture_view view,
                         host_context ctx = {}, arithmetic arith = arithmetic::exact)
      : data_(std::move(data)), view_(view), ctx_(ctx), arith_(arith) {
    // The blocked kernels read the transposed means of data_; a view into other memory takes the
    // row-by-row path.
    const double* first = data_->means.data();
    if (view_.dim == data_->dim && view_.means >= first &&
        view_.means + static_cast<std::ptrdiff_t>(view_.components) * view_.dim <= first + data_->means.size()) {
      const auto j0 = static_cast<int>((view_.means - first) / view_.dim);
      // One cluster (an expert): its own contiguous block of transposed means; otherwise (the
      // whole mixture) the shared (D, J) array.
      means_t_ = data_->means_t.data();
      ld_ = data_->components;
      j0_ = j0;
      for (int k = 0; k < data_->clusters; ++k)
        if (data_->cluster_begin[static_cast<std::size_t>(k)] == j0 &&
            data_->cluster_begin[static_cast<std::size_t>(k) + 1] - j0 == view_.components) {
          means_t_ = data_->cluster_means_t.data() + static_cast<std::ptrdiff_t>(j0) * view_.dim;
          ld_ = view_.components;
          j0_ = 0;
        }
      // The same arrays in float, at the same offsets.
      means_t_f_ = means_t_ == data_->means_t.data()
                       ? data_->means_t_f.data()
                       : data_->cluster_means_t_f.data() + (means_t_ - data_->cluster_means_t.data());
      means_f_ = data_->means_f.data() + (view_.means - first);
    }
  }

  template <class T>
  void operator()(batch_view<const T> x, double t, batch_view<T> v) {
    check_(x, t, "ddm::synthetic::gaussian_mixture_field");
    ddm::require_same_shape("ddm::synthetic::gaussian_mixture_field", "v", v, x);
    const int n = view_.components;
    const index_t b = x.rows();
    const index_t row_work = 3 * index_t{n} * view_.dim;
    const int parts = row_parts(ctx_, b, row_work);
    if (means_t_ == nullptr) {
      double* scratch = row_scratch_(parts);
      for_row_parts(parts, b, [&](const row_range& range) {
        double* s = scratch + 2 * static_cast<std::ptrdiff_t>(n) * range.part;
        for (index_t r = range.begin; r < range.end; ++r) mixture_velocity_row(view_, x.row(r), t, v.row(r), s);
      });
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      if (arith_ == arithmetic::value_type) {
        blocked_(x, t, v, parts, means_t_f_, means_f_, acc_f_);
        return;
      }
    }
    blocked_(x, t, v, parts, means_t_, view_.means, acc_);
  }

  /// out = J(x, t) u row by row, exactly.
  template <class T>
  void jvp(batch_view<const T> x, double t, batch_view<const T> u, batch_view<T> out) {
    check_(x, t, "ddm::synthetic::gaussian_mixture_field::jvp");
    ddm::require_same_shape("ddm::synthetic::gaussian_mixture_field::jvp", "u", u, x);
    ddm::require_same_shape("ddm::synthetic::gaussian_mixture_field::jvp", "out", out, x);
    const int n = view_.components;
    const int parts = row_parts(ctx_, x.rows(), 4 * index_t{n} * view_.dim);
    double* scratch = row_scratch_(parts);
    for_row_parts(parts, x.rows(), [&](const row_range& range) {
      double* s = scratch + 2 * static_cast<std::ptrdiff_t>(n) * range.part;
      for (index_t r = range.begin; r < range.end; ++r) mixture_jvp_row(view_, x.row(r), t, u.row(r), out.row(r), s);
    });
  }

  /// The host context whose threads the field uses.
  [[nodiscard]] const host_context& context() const noexcept { return ctx_; }
  /// How the field computes for float batches.
  [[nodiscard]] arithmetic arithmetic_of_float() const noexcept { return arith_; }

  /// The parameters, by pointer (valid while this field or its analytic_ddm lives).
  [[nodiscard]] const mixture_view& view() const noexcept { return view_; }

 private:
  // The blocked kernels in arithmetic M over means_t (transposed) and means (row-major) in M.
  template <class T, class M>
  void blocked_(batch_view<const T> x, double t, batch_view<T> v, int parts, const M* means_t, const M* means,
                std::vector<M>& acc_store) {
    const int n = view_.components;
    const index_t b = x.rows();
    const int stride = detail::padded_components(n);
    constexpr index_t acc_size = detail::block_rows * detail::block_cols;
    work_.resize(static_cast<std::size_t>(b * (stride + 1)));
    acc_store.resize(static_cast<std::size_t>(parts * acc_size));
    double* coef = work_.data();                 // (B, stride): d2, then log terms, then r_j b_j
    double* abar = coef + b * stride;            // (B)
    M* acc = acc_store.data();                   // (parts, block_rows, block_cols)
    time_terms_.compute(view_, t);
    // Each part runs the three stages on its own rows: one wake-up of the team per call.
    for_row_parts(
        parts, b,
        [&](const row_range& range) {
          const auto xs = x.subrows(range.begin, range.size());
          double* c = coef + range.begin * stride;
          detail::squared_distances(xs, means_t, ld_, j0_, n, t, c);
          for (index_t r = range.begin; r < range.end; ++r) {
            double* resp = coef + r * stride;
            detail::log_terms_from_distances(view_, time_terms_, resp);
            normalize_log_terms(resp, n);
            abar[r] = velocity_coefficients(view_, t, resp);
          }
          detail::mean_term(view_, means, xs, v.subrows(range.begin, range.size()), abar + range.begin, c, stride,
                            acc + range.part * acc_size);
        },
        detail::block_rows);
  }

  template <class T>
  void check_(batch_view<const T> x, double t, const char* where) const {
    detail::check_time(where, t);
    if (x.cols() != view_.dim)
      throw shape_error(ddm::concat(where, ": argument 'x' has ", x.cols(), " columns, expected D = ", view_.dim));
  }

  // The row functions' scratch (2 J doubles), one per part.
  double* row_scratch_(int parts) {
    scratch_.resize(2 * static_cast<std::size_t>(view_.components) * static_cast<std::size_t>(parts));
    return scratch_.data();
  }

  std::shared_ptr<const detail::analytic_ddm_data> data_;
  mixture_view view_;
  host_context ctx_;
  arithmetic arith_;
  const double* means_t_ = nullptr;  // the transposed means the blocked kernels read, or null
  const float* means_t_f_ = nullptr; // the same in float (arithmetic::value_type)
  const float* means_f_ = nullptr;   // view_.means in float
  int ld_ = 0;                       // (row-by-row path): their row length
  int j0_ = 0;                       // and view_'s first component in them
  std::vector<double> scratch_;
  std::vector<double> work_;    // the blocked kernels' workspace
  std::vector<double> acc_;     // their accumulator blocks, one per part
  std::vector<float> acc_f_;
  detail::component_time_terms time_terms_;
};

/// The exact posterior router of the analytic DDM: logits_k = log p(k | x_t) / tau (up to a
/// per-row constant), so that softmax gives p(k | x_t)^(1/tau), renormalized.
class posterior_router {
 public:
  posterior_router(std::shared_ptr<const detail::analytic_ddm_data> data, double tau, host_context ctx = {},
                   arithmetic arith = arithmetic::exact)
      : data_(std::move(data)), tau_(tau), ctx_(ctx), arith_(arith) {
    if (!(tau > 0.0) || !std::isfinite(tau))
      ddm::fail_argument("ddm::synthetic::posterior_router", "tau", tau, "a finite value > 0");
  }

  [[nodiscard]] std::size_t num_experts() const noexcept { return static_cast<std::size_t>(data_->clusters); }
  [[nodiscard]] const char* name() const noexcept { return "analytic posterior router"; }
  [[nodiscard]] double tau() const noexcept { return tau_; }

  template <class T>
  void operator()(batch_view<const T> x, double t, batch_view<T> logits) {
    constexpr const char* where = "ddm::synthetic::posterior_router";
    detail::check_time(where, t);
    if (x.cols() != data_->dim)
      throw shape_error(ddm::concat(where, ": argument 'x' has ", x.cols(), " columns, expected D = ", data_->dim));
    ddm::require_shape(where, "logits", logits, x.rows(), data_->clusters);
    const mixture_view m = data_->whole();
    const int n = data_->components;
    const int stride = detail::padded_components(n);
    scratch_.resize(static_cast<std::size_t>(x.rows() * stride));
    time_terms_.compute(m, t);
    double* d2 = scratch_.data();
    for_row_ranges(
        ctx_, x.rows(), 3 * index_t{n} * data_->dim,
        [&](const row_range& range) {
          const auto xs = x.subrows(range.begin, range.size());
          if (std::is_same_v<T, float> && arith_ == arithmetic::value_type)
            detail::squared_distances(xs, data_->means_t_f.data(), n, 0, n, t, d2 + range.begin * stride);
          else
            detail::squared_distances(xs, data_->means_t.data(), n, 0, n, t, d2 + range.begin * stride);
          for (index_t r = range.begin; r < range.end; ++r) {
            double* terms = d2 + r * stride;
            detail::log_terms_from_distances(m, time_terms_, terms);
            cluster_logits_from_terms(terms, n, data_->cluster_begin.data(), data_->clusters, 1.0 / tau_,
                                      logits.row(r));
          }
        },
        detail::block_rows);
  }

  /// The host context whose threads the router uses.
  [[nodiscard]] const host_context& context() const noexcept { return ctx_; }

 private:
  std::shared_ptr<const detail::analytic_ddm_data> data_;
  double tau_;
  host_context ctx_;
  arithmetic arith_;
  std::vector<double> scratch_;
  detail::component_time_terms time_terms_;
};

/// True data with the component and cluster each row was drawn from.
template <class T>
struct labeled_sample {
  batch<T> x;                  ///< (n, D)
  std::vector<int> component;  ///< (n)
  std::vector<int> cluster;    ///< (n)
};

class analytic_ddm {
 public:
  /// Philox streams of sample_data (the noise of ddm::fill_normal uses stream 0 by default, so
  /// data and initial noise drawn with the same seed are still independent).
  static constexpr std::uint64_t data_noise_stream = 0xDA7A0001;
  static constexpr std::uint64_t data_choice_stream = 0xDA7A0002;

  /// Components drawn from options.seed.
  explicit analytic_ddm(const analytic_ddm_options& options = {})
      : data_(detail::build_analytic_ddm(detail::draw_mixture_spec(options))) {}
  /// Explicit components.
  explicit analytic_ddm(const mixture_spec& spec) : data_(detail::build_analytic_ddm(spec)) {}

  [[nodiscard]] std::size_t num_clusters() const noexcept { return static_cast<std::size_t>(data_->clusters); }
  [[nodiscard]] index_t dim() const noexcept { return data_->dim; }
  [[nodiscard]] std::size_t num_components() const noexcept { return static_cast<std::size_t>(data_->components); }

  /// (J, D) component means, grouped by cluster: cluster k owns [cluster_begin()[k], cluster_begin()[k + 1]).
  [[nodiscard]] batch_view<const double> component_means() const noexcept {
    return {data_->means.data(), data_->components, data_->dim};
  }
  /// (J) component standard deviations s_j.
  [[nodiscard]] std::span<const double> component_scales() const noexcept { return data_->scales; }
  /// (J) overall component weights w_j = P_k pi_kj (sum 1).
  [[nodiscard]] std::span<const double> component_weights() const noexcept { return data_->weights; }
  /// (J) the cluster of each component.
  [[nodiscard]] std::span<const int> component_cluster() const noexcept { return data_->cluster_of; }
  /// (K + 1) first component of each cluster.
  [[nodiscard]] std::span<const int> cluster_begin() const noexcept { return data_->cluster_begin; }
  /// (K) cluster priors P_k.
  [[nodiscard]] std::span<const double> cluster_priors() const noexcept { return data_->priors; }
  /// (K, D) cluster means sum_j pi_kj mu_j: the centroids an alignment rank measures distance to.
  [[nodiscard]] batch_view<const double> centroids() const noexcept {
    return {data_->centroids.data(), data_->clusters, data_->dim};
  }
  /// (D) mean of the data.
  [[nodiscard]] std::span<const double> mean() const noexcept { return data_->mean; }
  /// (D, D) covariance of the data, sum_j w_j (s_j^2 I + (mu_j - m)(mu_j - m)^T). Built on the
  /// first call (O(J D^2) time, D^2 doubles), thread-safely; construction does not pay for it.
  [[nodiscard]] batch_view<const double> covariance() const {
    return {data_->covariance().data(), data_->dim, data_->dim};
  }

  /// The whole mixture's parameters and cluster k's (in-cluster weights), by pointer: for device
  /// copies and custom kernels.
  [[nodiscard]] mixture_view view() const noexcept { return data_->whole(); }
  [[nodiscard]] mixture_view cluster_view(std::size_t k) const {
    ddm::detail::check_expert_index("ddm::synthetic::analytic_ddm::cluster_view", k, num_clusters());
    return data_->cluster(static_cast<int>(k));
  }

  /// Expert k: the exact velocity of cluster k's data alone, its rows split over ctx's threads.
  /// `arith` says how it computes on float batches (see ddm::synthetic::arithmetic).
  [[nodiscard]] gaussian_mixture_field expert(std::size_t k, host_context ctx = {},
                                              arithmetic arith = arithmetic::exact) const {
    ddm::detail::check_expert_index("ddm::synthetic::analytic_ddm::expert", k, num_clusters());
    return {data_, data_->cluster(static_cast<int>(k)), ctx, arith};
  }
  /// All K experts, in cluster order.
  [[nodiscard]] expert_vector<gaussian_mixture_field> experts(host_context ctx = {},
                                                              arithmetic arith = arithmetic::exact) const {
    std::vector<gaussian_mixture_field> e;
    e.reserve(num_clusters());
    for (std::size_t k = 0; k < num_clusters(); ++k) e.push_back(expert(k, ctx, arith));
    return expert_vector<gaussian_mixture_field>(std::move(e));
  }
  /// The exact velocity of the whole data (a perfect monolithic model).
  [[nodiscard]] gaussian_mixture_field mixture_field(host_context ctx = {}, arithmetic arith = arithmetic::exact) const {
    return {data_, data_->whole(), ctx, arith};
  }
  /// The exact posterior router with temperature tau.
  [[nodiscard]] posterior_router router(double tau = 1.0, host_context ctx = {},
                                        arithmetic arith = arithmetic::exact) const {
    return {data_, tau, ctx, arith};
  }

  /// Fill `out` (n, D) with true data: row i is mu_j + s_j z with component j drawn by uniform
  /// number i of (seed, data_choice_stream) and z by normal numbers i * D + c of
  /// (seed, data_noise_stream). `component`, when not empty, receives each row's component (n).
  template <class T>
  void sample_data(batch_view<T> out, std::uint64_t seed, std::span<int> component = {}) const {
    constexpr const char* where = "ddm::synthetic::analytic_ddm::sample_data";
    if (out.cols() != data_->dim)
      throw shape_error(ddm::concat(where, ": argument 'out' has ", out.cols(), " columns, expected D = ", data_->dim));
    if (!component.empty() && component.size() != static_cast<std::size_t>(out.rows()))
      throw shape_error(ddm::concat(where, ": argument 'component' has ", component.size(), " entries, expected ",
                                            out.rows()));
    const auto d = static_cast<std::size_t>(data_->dim);
    for (index_t r = 0; r < out.rows(); ++r) {
      const double u = philox4x32::uniform(seed, data_choice_stream, static_cast<std::uint64_t>(r));
      std::size_t j = 0;
      double acc = data_->weights[0];
      while (u >= acc && j + 1 < data_->weights.size()) acc += data_->weights[++j];
      if (!component.empty()) component[static_cast<std::size_t>(r)] = static_cast<int>(j);
      const double s = data_->scales[j];
      for (std::size_t c = 0; c < d; ++c) {
        const double z = philox4x32::normal(seed, data_noise_stream, static_cast<std::uint64_t>(r) * d + c);
        out(r, static_cast<index_t>(c)) = static_cast<T>(data_->means[j * d + c] + s * z);
      }
    }
  }

  /// n rows of true data (see the view overload).
  template <class T = double>
  [[nodiscard]] batch<T> sample_data(index_t n, std::uint64_t seed) const {
    if (n < 0) ddm::fail_argument("ddm::synthetic::analytic_ddm::sample_data", "n", n, ">= 0");
    batch<T> x(n, data_->dim);
    sample_data(x.view(), seed);
    return x;
  }

  /// n rows of true data with their component and cluster labels.
  template <class T = double>
  [[nodiscard]] labeled_sample<T> sample_data_labeled(index_t n, std::uint64_t seed) const {
    if (n < 0) ddm::fail_argument("ddm::synthetic::analytic_ddm::sample_data_labeled", "n", n, ">= 0");
    labeled_sample<T> s{batch<T>(n, data_->dim), std::vector<int>(static_cast<std::size_t>(n)),
                        std::vector<int>(static_cast<std::size_t>(n))};
    sample_data(s.x.view(), seed, std::span<int>(s.component));
    for (std::size_t i = 0; i < s.component.size(); ++i)
      s.cluster[i] = data_->cluster_of[static_cast<std::size_t>(s.component[i])];
    return s;
  }

  /// log p(x) of the data at one point (D values), with every constant.
  [[nodiscard]] double log_density(std::span<const double> x) const {
    if (x.size() != static_cast<std::size_t>(data_->dim))
      throw shape_error(ddm::concat("ddm::synthetic::analytic_ddm::log_density: argument 'x' has ", x.size(),
                                            " values, expected D = ", data_->dim));
    std::vector<double> scratch(static_cast<std::size_t>(data_->components));
    return mixture_log_density_row(data_->whole(), x.data(), scratch.data());
  }

 private:
  std::shared_ptr<const detail::analytic_ddm_data> data_;
};

}  // namespace ddm::synthetic
