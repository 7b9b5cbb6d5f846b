#pragma once
// A router calibrated at every t: the wrapped router's logits divided by tau(t), a piecewise-linear
// temperature schedule over knots in t, fitted on held-out data.
//
//   temperature_schedule{knots, taus}     tau(t), linear between knots, constant beyond the ends
//   calibrated_router{router, schedule}   logits = router's logits / tau(t)   (a router itself)
//   fit_temperature(logits, labels)       the tau minimizing the NLL of the labels under
//                                         softmax(logits / tau)
//   fit_temperature_schedule(router, x0, clusters, knots, seed)
//                                         tau at each knot, fitted on the held-out data x0 noised to
//                                         that t: x_t = (1 - t) x0 + t eps
//
// Why per t: a trained router is sharp where its input is clean and blurred where it is noisy,
// and a single softmax temperature cannot be right at both ends. Which policy is best depends on
// the router's calibration, so policies are best compared on a calibrated one.
//
// The fit minimizes NLL(beta) = mean_n [log sum_k exp(beta l_nk) - beta l_n,y_n] over beta = 1/tau.
// NLL is convex in beta (a log-sum-exp of functions linear in beta, minus a linear term), so a
// golden-section search on [1/tau_max, 1/tau_min] finds its minimum in that bracket (the bracket's
// end when the minimum lies outside it).

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddm/core/algebra.hpp"
#include "ddm/core/batch.hpp"
#include "ddm/core/error.hpp"
#include "ddm/core/memory_space.hpp"
#include "ddm/core/name.hpp"
#include "ddm/core/rng.hpp"
#include "ddm/routing/router.hpp"

namespace ddm {

/// tau(t): piecewise linear through (knots[i], taus[i]), constant before the first knot and after
/// the last. Knots strictly increasing in [0, 1]; taus finite and > 0.
class temperature_schedule {
 public:
  temperature_schedule(std::vector<double> knots, std::vector<double> taus)
      : knots_(std::move(knots)), taus_(std::move(taus)) {
    constexpr const char* where = "ddm::temperature_schedule";
    if (knots_.empty()) throw argument_error("ddm::temperature_schedule: argument 'knots' is empty, expected >= 1 knot");
    if (taus_.size() != knots_.size())
      throw argument_error(ddm::concat(where, ": argument 'taus' has ", taus_.size(), " values, expected one per knot (",
                                          knots_.size(), ")"));
    for (std::size_t i = 0; i < knots_.size(); ++i) {
      if (!(knots_[i] >= 0.0 && knots_[i] <= 1.0))
        throw argument_error(ddm::concat(where, ": knot ", i, " = ", knots_[i], ", expected a time in [0, 1]"));
      if (i > 0 && !(knots_[i] > knots_[i - 1]))
        throw argument_error(ddm::concat(where, ": knot ", i, " = ", knots_[i], " after ", knots_[i - 1],
                                            ", expected strictly increasing knots"));
      if (!(taus_[i] > 0.0) || !std::isfinite(taus_[i]))
        throw argument_error(ddm::concat(where, ": tau ", i, " = ", taus_[i], ", expected a finite value > 0"));
    }
  }

  /// One temperature at every t.
  [[nodiscard]] static temperature_schedule constant(double tau) { return {{0.0}, {tau}}; }

  [[nodiscard]] double operator()(double t) const noexcept {
    if (t <= knots_.front()) return taus_.front();
    if (t >= knots_.back()) return taus_.back();
    std::size_t i = 1;
    while (knots_[i] < t) ++i;
    const double a = (t - knots_[i - 1]) / (knots_[i] - knots_[i - 1]);
    return (1.0 - a) * taus_[i - 1] + a * taus_[i];
  }

  [[nodiscard]] const std::vector<double>& knots() const noexcept { return knots_; }
  [[nodiscard]] const std::vector<double>& taus() const noexcept { return taus_; }

 private:
  std::vector<double> knots_;
  std::vector<double> taus_;
};

/// Any router with its logits divided by tau(t). Runs in the memory space of its context (the
/// division is a ddm::lincomb), so it wraps device routers too.
template <class Router, class Space = host_space>
class calibrated_router {
 public:
  calibrated_router(Router router, temperature_schedule tau, execution_context<Space> ctx = {})
      : router_(std::move(router)), tau_(std::move(tau)), ctx_(ctx),
        name_("calibrated(" + name_of(router_) + ")") {}

  [[nodiscard]] std::size_t num_experts() const { return static_cast<std::size_t>(router_.num_experts()); }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const temperature_schedule& schedule() const noexcept { return tau_; }
  [[nodiscard]] Router& inner() noexcept { return router_; }

  template <class T>
    requires ddm::router<Router, T, Space>
  void operator()(batch_view<const T, Space> x, double t, batch_view<T, Space> logits) {
    router_(x, t, logits);
    lincomb(ctx_, logits, {1.0 / tau_(t)}, logits);
  }

 private:
  Router router_;
  temperature_schedule tau_;
  [[no_unique_address]] execution_context<Space> ctx_;
  std::string name_;
};

/// The bracket and tolerance of fit_temperature.
struct temperature_fit_options {
  double tau_min = 0.01;
  double tau_max = 100.0;
  double tolerance = 1e-7;  ///< the search stops when the beta bracket is this narrow relative to beta
};

namespace detail {

template <class T>
void check_labeled_logits(const char* where, batch_view<const T> logits, std::span<const int> labels) {
  require_non_empty(where, "logits", logits);
  if (static_cast<index_t>(labels.size()) != logits.rows())
    throw shape_error(concat(where, ": argument 'labels' has ", labels.size(), " values, expected one per row of "
                             "'logits' (", logits.rows(), ")"));
  for (std::size_t n = 0; n < labels.size(); ++n)
    if (labels[n] < 0 || labels[n] >= logits.cols())
      throw argument_error(concat(where, ": label ", n, " = ", labels[n], ", expected an expert index in [0, ",
                                  logits.cols(), ")"));
  if (!all_finite(host_context{}, logits))
    throw argument_error(concat(where, ": argument 'logits' contains a NaN or infinity"));
}

}  // namespace detail

/// Mean negative log-likelihood of the labels under softmax(logits / tau), in nats.
template <class T>
[[nodiscard]] double temperature_nll(batch_view<const T> logits, std::span<const int> labels, double tau) {
  detail::check_labeled_logits("ddm::temperature_nll", logits, labels);
  if (!(tau > 0.0) || !std::isfinite(tau)) ddm::fail_argument("ddm::temperature_nll", "tau", tau, "a finite value > 0");
  const double beta = 1.0 / tau;
  double total = 0.0;
  for (index_t r = 0; r < logits.rows(); ++r) {
    double top = static_cast<double>(logits(r, 0));
    for (index_t k = 1; k < logits.cols(); ++k) top = std::max(top, static_cast<double>(logits(r, k)));
    double sum = 0.0;
    for (index_t k = 0; k < logits.cols(); ++k) sum += std::exp(beta * (static_cast<double>(logits(r, k)) - top));
    total += std::log(sum) - beta * (static_cast<double>(logits(r, labels[static_cast<std::size_t>(r)])) - top);
  }
  return total / static_cast<double>(logits.rows());
}

/// The temperature tau in [tau_min, tau_max] that minimizes temperature_nll (golden-section search
/// on beta = 1/tau, where the NLL is convex). Logits that are constant in every row carry no
/// information (the NLL does not depend on tau): the answer is then 1, the router left as it is.
template <class T>
[[nodiscard]] double fit_temperature(batch_view<const T> logits, std::span<const int> labels,
                                     const temperature_fit_options& options = {}) {
  constexpr const char* where = "ddm::fit_temperature";
  detail::check_labeled_logits(where, logits, labels);
  if (!(options.tau_min > 0.0) || !(options.tau_max > options.tau_min) || !std::isfinite(options.tau_max))
    throw argument_error(ddm::concat(where, ": options.tau_min = ", options.tau_min, ", options.tau_max = ",
                                        options.tau_max, ", expected 0 < tau_min < tau_max < infinity"));
  if (!(options.tolerance > 0.0))
    ddm::fail_argument(where, "options.tolerance", options.tolerance, "a value > 0");
  bool informative = false;
  for (index_t r = 0; r < logits.rows() && !informative; ++r)
    for (index_t k = 1; k < logits.cols(); ++k)
      if (logits(r, k) != logits(r, 0)) informative = true;
  if (!informative) return 1.0;

  auto nll = [&](double beta) { return temperature_nll(logits, labels, 1.0 / beta); };
  const double golden = (std::sqrt(5.0) - 1.0) / 2.0;  // 0.618...
  double lo = 1.0 / options.tau_max, hi = 1.0 / options.tau_min;
  double a = hi - golden * (hi - lo), b = lo + golden * (hi - lo);
  double fa = nll(a), fb = nll(b);
  while (hi - lo > options.tolerance * b) {
    if (fa <= fb) {
      hi = b;
      b = a;
      fb = fa;
      a = hi - golden * (hi - lo);
      fa = nll(a);
    } else {
      lo = a;
      a = b;
      fa = fb;
      b = lo + golden * (hi - lo);
      fb = nll(b);
    }
  }
  return 1.0 / (0.5 * (lo + hi));
}

/// tau at each knot, fitted on held-out data: x0 (N, D) rows of true data whose expert (cluster)
/// is clusters[n], noised to each knot t as x_t = (1 - t) x0 + t eps (eps from fill_normal(seed,
/// stream = the knot's index)); the router scores x_t and fit_temperature fits tau there. Host only.
template <class Router, class T>
  requires ddm::router<Router, T, host_space>
[[nodiscard]] temperature_schedule fit_temperature_schedule(Router& router, batch_view<const T> x0,
                                                            std::span<const int> clusters, std::vector<double> knots,
                                                            std::uint64_t seed,
                                                            const temperature_fit_options& options = {}) {
  constexpr const char* where = "ddm::fit_temperature_schedule";
  ddm::require_non_empty(where, "x0", x0);
  if (static_cast<index_t>(clusters.size()) != x0.rows())
    throw shape_error(ddm::concat(where, ": argument 'clusters' has ", clusters.size(),
                                     " values, expected one per row of 'x0' (", x0.rows(), ")"));
  // Validates the knots before any router call (the taus are placeholders of the right shape).
  (void)temperature_schedule(knots, std::vector<double>(knots.size(), 1.0));
  const host_context ctx{};
  const auto k = static_cast<index_t>(router.num_experts());
  batch<T> eps(x0.rows(), x0.cols()), xt(x0.rows(), x0.cols()), logits(x0.rows(), k);
  std::vector<double> taus;
  taus.reserve(knots.size());
  for (std::size_t i = 0; i < knots.size(); ++i) {
    const double t = knots[i];
    fill_normal(ctx, eps.view(), seed, i);
    lincomb(ctx, xt.view(), {1.0 - t, t}, x0, eps);
    router(xt.cview(), t, logits.view());
    taus.push_back(fit_temperature(logits.cview(), clusters, options));
  }
  return {std::move(knots), std::move(taus)};
}

}  // namespace ddm
