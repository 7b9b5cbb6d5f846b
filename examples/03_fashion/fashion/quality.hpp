#pragma once
// The quality measures of decoded samples in the classifier's feature space, against a reference
// set (the 10,000 Fashion-MNIST test images):
//   - Frechet distance between Gaussian fits of the two feature sets (the "FID" of this system;
//     ddm::synthetic::frechet_distance does the matrix square root);
//   - precision and recall with k-NN manifolds (Kynkaanniemi et al. 2019): a sample is "precise"
//     when it falls inside the ball of some reference feature whose radius is the distance to
//     that feature's k-th nearest reference neighbour; recall swaps the roles of the two sets;
//   - per-class coverage: the classifier's predicted class shares of the samples against the
//     reference labels' shares (total-variation distance; a class counts as covered when its
//     share reaches half of the reference share);
//   - per-sample quality: the distance of a sample's features to its k-th nearest reference
//     feature (lower is better), the quality each sample's disagreement is compared with.
// Distances come from one sgemm per block of rows (|a|^2 + |b|^2 - 2 a.b in float, clamped at 0).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include <ddm/core/batch.hpp>
#include <ddm/core/error.hpp>
#include <ddm/synthetic/quality.hpp>

#include "blas.hpp"

namespace fashion {

/// Mean (F) and covariance (F, F, n - 1 normalization) of a feature set, in double.
struct gaussian_fit {
  std::vector<double> mean;
  std::vector<double> cov;
  index_t dim = 0;
};

inline gaussian_fit fit_gaussian(ddm::batch_view<const float> f) {
  const index_t n = f.rows(), d = f.cols();
  if (n < 2) ddm::fail_argument("fashion::fit_gaussian", "rows", n, ">= 2 (a covariance needs two points)");
  gaussian_fit g;
  g.dim = d;
  g.mean.assign(static_cast<std::size_t>(d), 0.0);
  for (index_t r = 0; r < n; ++r)
    for (index_t c = 0; c < d; ++c) g.mean[static_cast<std::size_t>(c)] += f(r, c);
  for (auto& m : g.mean) m /= static_cast<double>(n);
  std::vector<double> centered(static_cast<std::size_t>(n * d));
  for (index_t r = 0; r < n; ++r)
    for (index_t c = 0; c < d; ++c) centered[static_cast<std::size_t>(r * d + c)] = f(r, c) - g.mean[static_cast<std::size_t>(c)];
  g.cov.assign(static_cast<std::size_t>(d * d), 0.0);
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(d), static_cast<int>(n), 1.0 / static_cast<double>(n - 1),
              centered.data(), static_cast<int>(d), 0.0, g.cov.data(), static_cast<int>(d));
  for (index_t a = 0; a < d; ++a)
    for (index_t b = 0; b < a; ++b) g.cov[static_cast<std::size_t>(a * d + b)] = g.cov[static_cast<std::size_t>(b * d + a)];
  return g;
}

inline double frechet_distance(const gaussian_fit& a, const gaussian_fit& b) {
  return ddm::synthetic::frechet_distance(a.mean, ddm::batch_view<const double>(a.cov.data(), a.dim, a.dim), b.mean,
                                          ddm::batch_view<const double>(b.cov.data(), b.dim, b.dim));
}

/// For every row of q, the k smallest squared distances to the rows of r, ascending (B, k).
/// exclude_self: q and r are the same set and a row's distance to itself is skipped (a radius
/// of a set within itself).
inline std::vector<float> knn_squared(ddm::batch_view<const float> q, ddm::batch_view<const float> r, index_t k,
                                      bool exclude_self = false) {
  constexpr const char* where = "fashion::knn_squared";
  if (q.cols() != r.cols())
    ddm::throw_error<ddm::shape_error>(where, ": the two sets have ", q.cols(), " and ", r.cols(), " features");
  const index_t avail = r.rows() - (exclude_self ? 1 : 0);
  if (k < 1 || k > avail) ddm::fail_argument(where, "k", k, "1 <= k <= the reference set's size (less itself)");
  const index_t nq = q.rows(), nr = r.rows(), d = q.cols();
  std::vector<float> qn(static_cast<std::size_t>(nq)), rn(static_cast<std::size_t>(nr));
  for (index_t i = 0; i < nq; ++i) {
    double s = 0;
    for (index_t c = 0; c < d; ++c) s += static_cast<double>(q(i, c)) * q(i, c);
    qn[static_cast<std::size_t>(i)] = static_cast<float>(s);
  }
  for (index_t i = 0; i < nr; ++i) {
    double s = 0;
    for (index_t c = 0; c < d; ++c) s += static_cast<double>(r(i, c)) * r(i, c);
    rn[static_cast<std::size_t>(i)] = static_cast<float>(s);
  }
  std::vector<float> rc(static_cast<std::size_t>(nr * d));
  for (index_t i = 0; i < nr; ++i) std::copy(r.row(i), r.row(i) + d, rc.data() + i * d);
  std::vector<float> out(static_cast<std::size_t>(nq * k));
  constexpr index_t block = 512;
  std::vector<float> dots(static_cast<std::size_t>(block * nr));
  std::vector<float> row;
  for (index_t first = 0; first < nq; first += block) {
    const index_t cnt = std::min(block, nq - first);
    linear_no_bias(q.subrows(first, cnt), rc.data(), nr, d, ddm::batch_view<float>(dots.data(), cnt, nr));
    for (index_t i = 0; i < cnt; ++i) {
      row.clear();
      const float* dr = dots.data() + i * nr;
      for (index_t j = 0; j < nr; ++j) {
        if (exclude_self && j == first + i) continue;
        row.push_back(std::max(0.0f, qn[static_cast<std::size_t>(first + i)] + rn[static_cast<std::size_t>(j)] - 2.0f * dr[j]));
      }
      std::partial_sort(row.begin(), row.begin() + k, row.end());
      std::copy(row.begin(), row.begin() + k, out.data() + (first + i) * k);
    }
  }
  return out;
}

/// The k-NN radii (squared) of a set within itself: each row's k-th nearest other row.
inline std::vector<float> knn_radii_squared(ddm::batch_view<const float> set, index_t k) {
  const auto all = knn_squared(set, set, k, /*exclude_self=*/true);
  std::vector<float> out(static_cast<std::size_t>(set.rows()));
  for (index_t i = 0; i < set.rows(); ++i) out[static_cast<std::size_t>(i)] = all[static_cast<std::size_t>(i * k + k - 1)];
  return out;
}

/// The share of the rows of q that fall inside at least one ball (row j of manifold, squared
/// radius radii2[j]).
inline double manifold_share(ddm::batch_view<const float> q, ddm::batch_view<const float> manifold,
                             std::span<const float> radii2) {
  const index_t nq = q.rows(), nm = manifold.rows(), d = q.cols();
  if (static_cast<index_t>(radii2.size()) != nm)
    ddm::throw_error<ddm::shape_error>("fashion::manifold_share: ", radii2.size(), " radii for ", nm, " points");
  std::vector<float> mc(static_cast<std::size_t>(nm * d)), mn(static_cast<std::size_t>(nm));
  for (index_t i = 0; i < nm; ++i) {
    std::copy(manifold.row(i), manifold.row(i) + d, mc.data() + i * d);
    double s = 0;
    for (index_t c = 0; c < d; ++c) s += static_cast<double>(manifold(i, c)) * manifold(i, c);
    mn[static_cast<std::size_t>(i)] = static_cast<float>(s);
  }
  constexpr index_t block = 512;
  std::vector<float> dots(static_cast<std::size_t>(block * nm));
  std::size_t inside = 0;
  for (index_t first = 0; first < nq; first += block) {
    const index_t cnt = std::min(block, nq - first);
    linear_no_bias(q.subrows(first, cnt), mc.data(), nm, d, ddm::batch_view<float>(dots.data(), cnt, nm));
    for (index_t i = 0; i < cnt; ++i) {
      double s = 0;
      for (index_t c = 0; c < d; ++c) s += static_cast<double>(q(first + i, c)) * q(first + i, c);
      const auto qn = static_cast<float>(s);
      const float* dr = dots.data() + i * nm;
      for (index_t j = 0; j < nm; ++j)
        if (std::max(0.0f, qn + mn[static_cast<std::size_t>(j)] - 2.0f * dr[j]) <= radii2[static_cast<std::size_t>(j)]) {
          ++inside;
          break;
        }
    }
  }
  return nq == 0 ? 0.0 : static_cast<double>(inside) / static_cast<double>(nq);
}

struct precision_recall {
  double precision = 0, recall = 0;
};

/// Kynkaanniemi et al.'s improved precision and recall of `generated` against `real`, k-NN
/// balls with the given k. real_radii2: knn_radii_squared(real, k), passed in because a study
/// compares many sample sets with one reference.
inline precision_recall improved_precision_recall(ddm::batch_view<const float> real, std::span<const float> real_radii2,
                                                  ddm::batch_view<const float> generated, index_t k) {
  precision_recall pr;
  pr.precision = manifold_share(generated, real, real_radii2);
  const auto gen_radii2 = knn_radii_squared(generated, k);
  pr.recall = manifold_share(real, generated, gen_radii2);
  return pr;
}

/// Class shares of predicted labels, their TV distance to reference shares, and the classes
/// covered (share >= half the reference share).
struct class_coverage {
  std::vector<double> share;
  double tv_distance = 0;
  int covered = 0;
};

inline class_coverage coverage_of(std::span<const int> predicted, std::span<const double> reference_share) {
  class_coverage c;
  c.share.assign(reference_share.size(), 0.0);
  for (int p : predicted) c.share.at(static_cast<std::size_t>(p)) += 1.0;
  for (auto& s : c.share) s /= predicted.empty() ? 1.0 : static_cast<double>(predicted.size());
  for (std::size_t i = 0; i < c.share.size(); ++i) {
    c.tv_distance += 0.5 * std::abs(c.share[i] - reference_share[i]);
    if (c.share[i] >= 0.5 * reference_share[i] && reference_share[i] > 0) ++c.covered;
  }
  return c;
}

/// The argmax of each row of logits (ties to the lowest index).
inline std::vector<int> argmax_rows(ddm::batch_view<const float> logits) {
  std::vector<int> out(static_cast<std::size_t>(logits.rows()));
  for (index_t r = 0; r < logits.rows(); ++r) {
    index_t best = 0;
    for (index_t c = 1; c < logits.cols(); ++c)
      if (logits(r, c) > logits(r, best)) best = c;
    out[static_cast<std::size_t>(r)] = static_cast<int>(best);
  }
  return out;
}

}  // namespace fashion
