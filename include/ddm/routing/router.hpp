#pragma once
// Routers: score K experts for every row of a batch at time t.
//
//   r.num_experts()        K
//   r(x, t, logits)        writes (B, K) logits (any real numbers; the routed field turns them
//                          into probabilities with ddm::softmax_rows)
//   r.name()               a name for reports and error messages: anything string-like
//                          (const char*, std::string, std::string_view; ddm/core/name.hpp)
//
// Provided here: router_fn (any callable as a router) and nearest_centroid_router (softmax of
// -||phi(x0_hat) - c_k||^2 / tau, the distance the Paris study ranks experts by). The exact
// posterior router of the analytic DDM is ddm::synthetic::posterior_router.

#include <cmath>
#include <concepts>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/field.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/name.hpp"
#include "ddm/core/scratch.hpp"

namespace ddm {

/// R writes (B, K) logits for batches of T in Space: r(x, t, logits), with r.num_experts() == K
/// and a string-like name() for error messages (ddm::named).
template <class R, class T, class Space = host_space>
concept router = named<R> && requires(R& r, const R& cr, batch_view<const T, Space> x, double t,
                                      batch_view<T, Space> logits) {
  { cr.num_experts() } -> std::convertible_to<std::size_t>;
  r(x, t, logits);
};

/// A callable f(x, t, logits) with a fixed number of experts and a name, as a router.
template <class F>
class router_function {
 public:
  router_function(std::size_t num_experts, std::string name, F f)
      : num_experts_(num_experts), name_(std::move(name)), f_(std::move(f)) {
    if (num_experts == 0) ddm::fail_argument("ddm::router_fn", "num_experts", num_experts, ">= 1");
  }

  [[nodiscard]] std::size_t num_experts() const noexcept { return num_experts_; }
  [[nodiscard]] const char* name() const noexcept { return name_.c_str(); }
  [[nodiscard]] F& function() noexcept { return f_; }

  template <class T, class Space>
    requires std::invocable<F&, batch_view<const T, Space>, double, batch_view<T, Space>>
  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> logits) {
    if (logits.rows() != x.rows() || logits.cols() != static_cast<index_t>(num_experts_))
      throw shape_error(ddm::concat("ddm::router_fn '", name_, "': argument 'logits' has shape (", logits.rows(),
                                       ", ", logits.cols(), "), expected (", x.rows(), ", ", num_experts_, ")"));
    f_(x, t, logits);
  }

 private:
  std::size_t num_experts_;
  std::string name_;
  F f_;
};

/// A router from a callable f(batch_view<const T> x, double t, batch_view<T> logits).
template <class F>
[[nodiscard]] router_function<std::decay_t<F>> router_fn(std::size_t num_experts, std::string name, F&& f) {
  return router_function<std::decay_t<F>>(num_experts, std::move(name), std::forward<F>(f));
}

/// phi(x) = x: the embedding of nearest_centroid_router when the centroids live in data space.
struct identity_embedding {
  template <class T>
  void operator()(batch_view<const T> x, batch_view<T> out) const {
    copy(host_context{}, out, x);
  }
};

/// The exact velocity of standard normal data, N(0, I): v = ((2t - 1) x) / ((1 - t)^2 + t^2).
/// Its data prediction x0_hat = x - t v = (1 - t) x / ((1 - t)^2 + t^2) shrinks the state toward 0
/// as the noise grows: the model-free default denoiser of nearest_centroid_router.
struct standard_normal_velocity {
  template <class T>
  void operator()(batch_view<const T> x, double t, batch_view<T> v) const {
    const double var = (1 - t) * (1 - t) + t * t;
    lincomb(host_context{}, v, {(2 * t - 1) / var}, x);
  }
};

/// Routes by distance in an embedding space: logits_k = -||phi(x0_hat) - c_k||^2 / tau, where
/// x0_hat = x - t v_d(x, t) is the data prediction of a denoiser field v_d, phi an embedding
/// (B, D) -> (B, E), and c_k the K centroids (K, E) of the experts' training clusters. The Paris
/// study ranks experts by exactly this distance (DINOv2 embeddings of the current state, k-means
/// centroids of the training clusters).
///
/// phi is called as phi(x0_hat, out) or, when it takes a context first, phi(ctx, x0_hat, out): the
/// form of ddm::diagnostics::embedding, so one embedding serves the router and the alignment ranks.
///
/// Host only. Defaults: phi = identity (centroids in data space) and the model-free denoiser of
/// standard normal data (x0_hat = (1 - t) x / ((1 - t)^2 + t^2)); pass the field of a real model
/// (a monolith, or the routed ensemble of the previous step) for a sharper x0_hat.
template <class Embed = identity_embedding, class Denoiser = standard_normal_velocity>
class nearest_centroid_router {
 public:
  /// `centroids` is (K, E) (copied); tau > 0 is the temperature of the distances.
  nearest_centroid_router(batch_view<const double> centroids, double tau = 1.0, Embed phi = {}, Denoiser denoiser = {})
      : k_(centroids.rows()), e_(centroids.cols()), tau_(tau), phi_(std::move(phi)), denoiser_(std::move(denoiser)) {
    constexpr const char* where = "ddm::nearest_centroid_router";
    ddm::require_non_empty(where, "centroids", centroids);
    if (!(tau > 0.0) || !std::isfinite(tau)) ddm::fail_argument(where, "tau", tau, "a finite value > 0");
    if (!all_finite(host_context{}, centroids))
      throw argument_error("ddm::nearest_centroid_router: argument 'centroids' contains a NaN or infinity");
    centroids_.resize(static_cast<std::size_t>(k_ * e_));
    copy(host_context{}, batch_view<double>(centroids_.data(), k_, e_), centroids);
  }

  [[nodiscard]] std::size_t num_experts() const noexcept { return static_cast<std::size_t>(k_); }
  [[nodiscard]] const char* name() const noexcept { return "nearest_centroid_router"; }
  [[nodiscard]] double tau() const noexcept { return tau_; }
  /// The (K, E) centroids.
  [[nodiscard]] batch_view<const double> centroids() const noexcept { return {centroids_.data(), k_, e_}; }
  [[nodiscard]] Embed& embedding() noexcept { return phi_; }
  [[nodiscard]] Denoiser& denoiser() noexcept { return denoiser_; }

  template <class T>
    requires(velocity_field<Denoiser, T, host_space> &&
             (std::invocable<Embed&, batch_view<const T>, batch_view<T>> ||
              std::invocable<Embed&, const host_context&, batch_view<const T>, batch_view<T>>))
  void operator()(batch_view<const T> x, double t, batch_view<T> logits) {
    constexpr const char* where = "ddm::nearest_centroid_router";
    const index_t k_count = k_;
    const index_t e_dim = e_;
    ddm::require_shape(where, "logits", logits, x.rows(), k_count);
    if (x.rows() == 0) return;
    const host_context ctx{};
    auto x0 = x0_scratch_.template get<T>(ctx, x.rows(), x.cols());
    denoiser_(x, t, x0);                      // v_d
    lincomb(ctx, x0, {1.0, -t}, x, x0);       // x0_hat = x - t v_d
    auto emb = embed_scratch_.template get<T>(ctx, x.rows(), e_dim);
    if constexpr (std::invocable<Embed&, const host_context&, batch_view<const T>, batch_view<T>>)
      phi_(ctx, x0.as_const(), emb);  // the form the alignment diagnostics take
    else
      phi_(x0.as_const(), emb);
    const double inv_tau = 1.0 / tau_;
    for (index_t r = 0; r < x.rows(); ++r)
      for (index_t k = 0; k < k_count; ++k) {
        double d2 = 0;
        for (index_t c = 0; c < e_dim; ++c) {
          const double d = static_cast<double>(emb(r, c)) - centroids_[static_cast<std::size_t>(k * e_dim + c)];
          d2 += d * d;
        }
        logits(r, k) = static_cast<T>(-d2 * inv_tau);
      }
  }

 private:
  index_t k_;
  index_t e_;
  std::vector<double> centroids_;  // (K, E)
  double tau_;
  Embed phi_;
  Denoiser denoiser_;
  detail::typed_scratch<host_space> x0_scratch_;
  detail::typed_scratch<host_space> embed_scratch_;
};

}  // namespace ddm
