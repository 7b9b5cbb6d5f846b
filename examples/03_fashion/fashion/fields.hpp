#pragma once
// A fashion DDM folder as ddm components: each TimeMLP as a velocity field (experts and the
// monolith, for float and double states; the network runs in float, double states are rounded
// to float on the way in), the learned router (logits / tau) and the "oracle" router (the exact
// posterior of the partition's empirical subsample, in log space) as ddm routers.

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <ddm/core/batch.hpp>
#include <ddm/core/error.hpp>
#include <ddm/routing/ensemble.hpp>

#include "folder.hpp"

namespace fashion {

namespace float_rows {

// Runs net on x (float or double) into y (same type), through float buffers when T is double.
template <class T>
void run_net(const time_mlp& net, ddm::batch_view<const T> x, double t, ddm::batch_view<T> y, time_mlp::workspace& ws,
             std::vector<float>& xin, std::vector<float>& yout) {
  if constexpr (std::is_same_v<T, float>) {
    net.forward(x, t, y, ws);
  } else {
    const index_t b = x.rows();
    xin.resize(static_cast<std::size_t>(b * x.cols()));
    yout.resize(static_cast<std::size_t>(b * y.cols()));
    for (index_t r = 0; r < b; ++r)
      for (index_t c = 0; c < x.cols(); ++c) xin[static_cast<std::size_t>(r * x.cols() + c)] = static_cast<float>(x(r, c));
    net.forward(ddm::batch_view<const float>(xin.data(), b, x.cols()), t, ddm::batch_view<float>(yout.data(), b, y.cols()), ws);
    for (index_t r = 0; r < b; ++r)
      for (index_t c = 0; c < y.cols(); ++c) y(r, c) = yout[static_cast<std::size_t>(r * y.cols() + c)];
  }
}

}  // namespace float_rows

/// One TimeMLP of a folder (an expert or the monolith) as a ddm velocity field. Copies share the
/// weights; each copy has its own scratch buffers.
class time_mlp_field {
 public:
  time_mlp_field(std::shared_ptr<const ddm_folder> folder, const time_mlp* net) : folder_(std::move(folder)), net_(net) {}

  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  void operator()(ddm::batch_view<const T> x, double t, ddm::batch_view<T> v) {
    float_rows::run_net(*net_, x, t, v, ws_, xin_, yout_);
  }

 private:
  std::shared_ptr<const ddm_folder> folder_;
  const time_mlp* net_;
  time_mlp::workspace ws_;
  std::vector<float> xin_, yout_;
};

/// The folder's K experts as a ddm expert set.
inline ddm::expert_vector<time_mlp_field> make_experts(const std::shared_ptr<const ddm_folder>& f) {
  std::vector<time_mlp_field> e;
  for (const auto& net : f->experts) e.emplace_back(f, &net);
  return ddm::expert_vector<time_mlp_field>(std::move(e));
}

inline time_mlp_field make_monolith(const std::shared_ptr<const ddm_folder>& f) { return {f, &f->monolith}; }

/// The learned router: its logits divided by the temperature tau (tau > 1 flattens, < 1 sharpens).
class learned_router {
 public:
  learned_router(std::shared_ptr<const ddm_folder> folder, double tau) : folder_(std::move(folder)), tau_(tau) {
    if (!(tau > 0) || !std::isfinite(tau)) ddm::fail_argument("fashion::learned_router", "tau", tau, "a finite value > 0");
  }
  [[nodiscard]] std::size_t num_experts() const noexcept { return static_cast<std::size_t>(folder_->cfg.num_experts); }
  [[nodiscard]] const char* name() const noexcept { return "learned_router"; }

  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  void operator()(ddm::batch_view<const T> x, double t, ddm::batch_view<T> logits) {
    float_rows::run_net(folder_->router, x, t, logits, ws_, xin_, yout_);
    const T inv = static_cast<T>(1.0 / tau_);
    for (index_t r = 0; r < logits.rows(); ++r)
      for (index_t c = 0; c < logits.cols(); ++c) logits(r, c) *= inv;
  }

 private:
  std::shared_ptr<const ddm_folder> folder_;
  double tau_;
  time_mlp::workspace ws_;
  std::vector<float> xin_, yout_;
};

/// The empirical-posterior router: p(k | z_t) = sum_{i in k} N(z_t; (1 - t) z_i, t^2 I) / sum_i
/// (...) over the partition's oracle subsample z_i. Its logits are log p(k | z_t) up to a
/// constant per row, computed in double with a log-sum-exp per cluster (the Gaussians' exponents
/// reach -1e4 near t = 0, where a direct sum underflows to 0 / 0). At t = 0 the posterior is the
/// limit, all mass on the cluster(s) of the nearest z_i. tau divides the logits as for the
/// learned router.
class oracle_router {
 public:
  oracle_router(const std::shared_ptr<const ddm_folder>& folder, double tau)
      : oracle_router(std::shared_ptr<const partition_data>(folder, folder ? &folder->part : nullptr), tau) {}
  /// Over any partition's subsample (the DiT tier's is in pixel space): only the partition is read.
  oracle_router(std::shared_ptr<const partition_data> part, double tau) : part_(std::move(part)), tau_(tau) {
    if (!part_) throw ddm::argument_error("fashion::oracle_router: argument 'part' is null");
    if (!(tau > 0) || !std::isfinite(tau)) ddm::fail_argument("fashion::oracle_router", "tau", tau, "a finite value > 0");
    const auto& p = *part_;
    norms_.resize(static_cast<std::size_t>(p.n));
    for (index_t i = 0; i < p.n; ++i) {
      double s = 0;
      for (index_t c = 0; c < p.d; ++c) s += p.oracle_latents[static_cast<std::size_t>(i * p.d + c)] * p.oracle_latents[static_cast<std::size_t>(i * p.d + c)];
      norms_[static_cast<std::size_t>(i)] = s;
    }
  }
  [[nodiscard]] std::size_t num_experts() const noexcept { return static_cast<std::size_t>(part_->k); }
  [[nodiscard]] const char* name() const noexcept { return "oracle_router"; }

  template <class T>
    requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
  void operator()(ddm::batch_view<const T> x, double t, ddm::batch_view<T> logits) {
    constexpr const char* where = "fashion::oracle_router";
    const auto& p = *part_;
    if (x.cols() != p.d || logits.cols() != p.k || logits.rows() != x.rows())
      ddm::throw_error<ddm::shape_error>(where, ": x is (", x.rows(), ", ", x.cols(), "), logits (", logits.rows(), ", ",
                                                 logits.cols(), "), expected (B, ", p.d, ") and (B, ", p.k, ")");
    if (!(t >= 0 && t <= 1)) ddm::fail_argument(where, "t", t, "a time in [0, 1]");
    const index_t b = x.rows();
    xd_.resize(static_cast<std::size_t>(b * p.d));
    for (index_t r = 0; r < b; ++r)
      for (index_t c = 0; c < p.d; ++c) xd_[static_cast<std::size_t>(r * p.d + c)] = static_cast<double>(x(r, c));
    cross_.resize(static_cast<std::size_t>(b * p.n));
    if (b > 0)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(b), static_cast<int>(p.n), static_cast<int>(p.d),
                  1.0, xd_.data(), static_cast<int>(p.d), p.oracle_latents.data(), static_cast<int>(p.d), 0.0, cross_.data(),
                  static_cast<int>(p.n));
    const double a = 1.0 - t;
    std::vector<double> best(static_cast<std::size_t>(p.k));
    std::vector<double> acc(static_cast<std::size_t>(p.k));
    constexpr double neg_inf = -std::numeric_limits<double>::infinity();
    for (index_t r = 0; r < b; ++r) {
      double xn = 0;
      for (index_t c = 0; c < p.d; ++c) xn += xd_[static_cast<std::size_t>(r * p.d + c)] * xd_[static_cast<std::size_t>(r * p.d + c)];
      const double* cr = cross_.data() + r * p.n;
      // squared distance |x - a z_i|^2 for each i; exponent -dist / (2 t^2)
      std::fill(best.begin(), best.end(), neg_inf);
      std::fill(acc.begin(), acc.end(), 0.0);
      if (t > 0) {
        const double s = 1.0 / (2.0 * t * t);
        for (index_t i = 0; i < p.n; ++i) {
          const double dist = std::max(0.0, xn + a * a * norms_[static_cast<std::size_t>(i)] - 2.0 * a * cr[i]);
          const double e = -dist * s;
          const auto k = static_cast<std::size_t>(p.oracle_clusters[static_cast<std::size_t>(i)]);
          if (e > best[k]) {
            acc[k] = acc[k] * std::exp(best[k] - e) + 1.0;
            best[k] = e;
          } else {
            acc[k] += std::exp(e - best[k]);
          }
        }
        for (index_t k = 0; k < p.k; ++k) {
          const auto kk = static_cast<std::size_t>(k);
          // A cluster without oracle latents (a stratified subsample can round one to none) has
          // probability 0: a logit far below any other, finite in float too (softmax refuses -inf).
          logits(r, k) = best[kk] == neg_inf ? static_cast<T>(-1e30) : static_cast<T>((best[kk] + std::log(acc[kk])) / tau_);
        }
      } else {
        double nearest = std::numeric_limits<double>::infinity();
        for (index_t i = 0; i < p.n; ++i)
          nearest = std::min(nearest, xn + norms_[static_cast<std::size_t>(i)] - 2.0 * cr[i]);
        for (index_t k = 0; k < p.k; ++k) logits(r, k) = static_cast<T>(-1e30);  // exp underflows to 0 in float and double
        for (index_t i = 0; i < p.n; ++i)
          if (xn + norms_[static_cast<std::size_t>(i)] - 2.0 * cr[i] <= nearest)
            logits(r, p.oracle_clusters[static_cast<std::size_t>(i)]) = T(0);
      }
    }
  }

 private:
  std::shared_ptr<const partition_data> part_;
  double tau_;
  std::vector<double> norms_;
  std::vector<double> xd_, cross_;
};

}  // namespace fashion
