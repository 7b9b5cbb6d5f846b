#pragma once
// The part of a policy's study that runs where the samples live: sampling, the observers (L_eff,
// the routing instruments), Delta_refine and the perturbation amplification.
// measure_policy<T, Space>(cfg, geometry, source, ...) makes the routed field, the sampler's buffers
// and the observers in one memory space, from a `source` of experts and router: host_source (the
// analytic DDM on the host) here, or the device analytic DDM in paradox_cuda.cu. The final
// samples come back to the host once; the quality measures and the statistics that need them run
// on the host (finish_policy, study.hpp).
//
// This header needs neither Eigen nor nlohmann_json, so that the CUDA translation unit compiles
// only what runs on the device.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <ddm/ddm.hpp>

namespace paradox {

namespace dd = ddm::diagnostics;
namespace ds = ddm::synthetic;

enum class device { cpu, cuda };

/// The value type of the states, velocities and the sampler's buffers. The analytic DDM's per-row
/// code runs in double either way; float rounds its outputs and every update of the sampler.
enum class precision { float32, float64 };

[[nodiscard]] inline const char* to_string(precision p) noexcept { return p == precision::float32 ? "float" : "double"; }
[[nodiscard]] inline const char* to_string(device d) noexcept { return d == device::cpu ? "cpu" : "cuda"; }

/// Everything a run of the study depends on (the command line, parsed).
struct config {
  ds::analytic_ddm_options model{};  ///< clusters, dim, components per cluster, model seed
  ddm::index_t samples = 2000;
  long steps = 32;
  std::string integrator = "heun";
  double tau = 4.0;
  std::uint64_t seed = 1;  ///< noise, probes, perturbation and statistics
  std::vector<std::string> policies{"top1", "top2", "full", "full_then_top2", "top2_then_full"};
  double t_switch = 0.5;   ///< where the scheduled policies switch
  std::vector<double> sweep_tau;
  std::string json_path;
  std::string out_dir;
  device dev = device::cpu;
  precision prec = precision::float64;  ///< the command line's default: double on cpu, float on cuda
  std::size_t leff_every = 1;
  double epsilon = 1e-3;   ///< perturbation of the noise: delta = epsilon z
  std::size_t permutations = 9999;
  std::size_t bootstrap = 1000;
  bool quiet = false;
  std::string system = "analytic";  ///< analytic | fashion-classes | fashion-kmeans
  std::string models_dir;           ///< the fashion systems' folders (default: the source tree's)
  bool samples_given = false, steps_given = false, tau_given = false;  ///< else the system's defaults
};

/// The policies the study knows, by the name used on the command line and in the JSON. Beside
/// these, parametrized keys: confidence:C (ddm::confidence_adaptive{C}), ratio:R
/// (ddm::ratio_gated{R}), and a scheduled key with its own switch time, full_then_top2@S
/// (what --sweep-switch expands to). top2_then_top1 is not in the default list: it is the
/// conjecture's schedule (alignment matters late), asked for by name.
inline const std::vector<std::string>& known_policies() {
  static const std::vector<std::string> names{"top1", "top2", "full", "full_then_top2", "top2_then_full",
                                              "top2_then_top1"};
  return names;
}

namespace detail {

// The number after a key's prefix ("0.7" of "confidence:0.7"), or nullopt when it does not parse
// completely.
inline std::optional<double> key_number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace detail

/// Every policy of the study as one type: top-k, the full ensemble, or a gated policy
/// (confidence_adaptive, ratio_gated), or a schedule of two of them switching at t_switch. One type
/// keeps the routed field to one instantiation per value type and memory space, and it is a
/// ddm::device_row_policy (trivially copyable, with a DDM_HOST_DEVICE apply_row), so that on a GPU
/// the routed field decides in its fused kernel (one wait per call) instead of through a
/// type-erased policy (three). name() and select() are those of the ddm policy it stands for
/// (top_k, full_ensemble, confidence_adaptive, ratio_gated, scheduled), so the names, the host's
/// numbers and the errors are ddm's.
class study_policy {
 public:
  /// The policy of a command-line key; std::invalid_argument naming the key and what was expected.
  [[nodiscard]] static study_policy from_key(const std::string& key, double t_switch) {
    const part top1{kind::top, ddm::top_1()};
    const part top2{kind::top, ddm::top_2()};
    const part full{kind::full};
    std::string base = key;
    if (const auto at = key.find('@'); at != std::string::npos) {
      base = key.substr(0, at);
      const auto s = detail::key_number(key.substr(at + 1));
      if (base != "full_then_top2" && base != "top2_then_full" && base != "top2_then_top1")
        throw std::invalid_argument("policy '" + key +
                                    "': only full_then_top2, top2_then_full and top2_then_top1 take @S");
      if (!s || !(*s > 0 && *s < 1))
        throw std::invalid_argument("policy '" + key + "': expected a switch time in (0, 1) after '@'");
      t_switch = *s;
    }
    if (base == "top1") return study_policy(top1);
    if (base == "top2") return study_policy(top2);
    if (base == "full") return study_policy(full);
    if (base == "full_then_top2") return study_policy(full, top2, t_switch);
    if (base == "top2_then_full") return study_policy(top2, full, t_switch);
    if (base == "top2_then_top1") return study_policy(top2, top1, t_switch);
    for (const char* prefix : {"confidence:", "ratio:"}) {
      const std::string p(prefix);
      if (base.rfind(p, 0) != 0) continue;
      const auto v = detail::key_number(base.substr(p.size()));
      if (!v || !(*v >= 0 && *v <= 1))
        throw std::invalid_argument("policy '" + key + "': expected a value in [0, 1] after '" + p + "'");
      part g{p == "confidence:" ? kind::confidence : kind::ratio};
      if (g.k == kind::confidence) g.confidence = ddm::confidence_adaptive{*v};
      else g.ratio = ddm::ratio_gated{*v};
      return study_policy(g);
    }
    throw std::invalid_argument("unknown policy '" + key +
                                "' (expected top1, top2, full, full_then_top2, top2_then_full, top2_then_top1, "
                                "full_then_top2@S, top2_then_full@S, top2_then_top1@S, confidence:C or ratio:R)");
  }

  [[nodiscard]] std::string name() const {
    return visit_<std::string>([](const auto& p) { return std::string(p.name()); });
  }

  template <class T, class Space>
  void select(const ddm::execution_context<Space>& ctx, ddm::batch_view<const std::type_identity_t<T>, Space> probs,
              double t, ddm::batch_view<T, Space> weights, ddm::batch_view<std::uint8_t, Space> selected) const {
    visit_<void>([&](const auto& p) { p.select(ctx, probs, t, weights, selected); });
  }

  /// The per-row decision of the policy in force at t (as ddm::scheduled: early while t > t_switch).
  template <class T>
  DDM_HOST_DEVICE bool apply_row(const T* p, int num_experts, double t, T* w, std::uint8_t* selected) const noexcept {
    const part& in_force = !scheduled_ || t > t_switch_ ? early_ : late_;
    switch (in_force.k) {
      case kind::full: return in_force.all.apply_row(p, num_experts, t, w, selected);
      case kind::confidence: return in_force.confidence.apply_row(p, num_experts, t, w, selected);
      case kind::ratio: return in_force.ratio.apply_row(p, num_experts, t, w, selected);
      default: return in_force.top.apply_row(p, num_experts, t, w, selected);
    }
  }

 private:
  enum class kind : std::uint8_t { top, full, confidence, ratio };
  struct part {
    kind k = kind::top;
    ddm::top_k top{1};
    ddm::full_ensemble all{};
    ddm::confidence_adaptive confidence{0.5};  // placeholders unless k says so
    ddm::ratio_gated ratio{0.5};
  };

  explicit study_policy(part only) : early_(only), late_(only) {}
  study_policy(part early, part late, double t_switch)
      : early_(early), late_(late), t_switch_(t_switch), scheduled_(true) {}

  // Calls f with the ddm policy this one stands for. The scheduled keys pair top-k and the full
  // ensemble only (from_key builds no other schedule; top2_then_top1 pairs two top-k).
  template <class R, class F>
  R visit_(F&& f) const {
    if (!scheduled_) {
      switch (early_.k) {
        case kind::full: return f(early_.all);
        case kind::confidence: return f(early_.confidence);
        case kind::ratio: return f(early_.ratio);
        default: return f(early_.top);
      }
    }
    const bool early_full = early_.k == kind::full, late_full = late_.k == kind::full;
    if (early_full && late_full) return f(ddm::scheduled{t_switch_, early_.all, late_.all});
    if (early_full) return f(ddm::scheduled{t_switch_, early_.all, late_.top});
    if (late_full) return f(ddm::scheduled{t_switch_, early_.top, late_.all});
    return f(ddm::scheduled{t_switch_, early_.top, late_.top});
  }

  part early_;
  part late_;
  double t_switch_ = 0.0;
  bool scheduled_ = false;
};

static_assert(ddm::routing_policy<study_policy, double> && ddm::routing_policy<study_policy, float>);

using any_integrator = std::variant<ddm::euler, ddm::heun, ddm::dpmpp_2m, ddm::dpmpp_3m>;

/// The integrator named on the command line (euler, heun, dpm++2m, dpm++3m).
inline any_integrator make_integrator(const std::string& name) {
  if (name == "euler") return ddm::euler{};
  if (name == "heun") return ddm::heun{};
  if (name == "dpm++2m") return ddm::dpmpp_2m{};
  if (name == "dpm++3m") return ddm::dpmpp_3m{};
  throw std::invalid_argument("unknown integrator '" + name + "'");
}

/// The analytic DDM's experts and router on the host.
struct host_source {
  const ds::analytic_ddm* model;

  [[nodiscard]] ddm::host_context context() const noexcept { return {}; }
  template <class T>
  [[nodiscard]] auto routed_field(double tau, const study_policy& policy) const {
    return ddm::make_routed_field<T, ddm::host_space>(model->experts(), model->router(tau), policy, context());
  }
};

/// Prints what the study is doing to stderr, once the run has taken more than a second.
class progress {
 public:
  explicit progress(bool quiet) : quiet_(quiet), start_(clock::now()) {}
  void note(const std::string& what) const {
    const double s = seconds();
    if (quiet_ || s < 1.0) return;
    std::fprintf(stderr, "[%6.1fs] %s\n", s, what.c_str());
  }
  [[nodiscard]] double seconds() const { return std::chrono::duration<double>(clock::now() - start_).count(); }

 private:
  using clock = std::chrono::steady_clock;
  bool quiet_;
  clock::time_point start_;
};

struct quality_numbers {
  double frechet = 0, nll = 0, coverage = 0, precision = 0, cluster_coverage = 0, cluster_tv = 0;
  std::vector<double> cluster_share;  ///< (K) share of samples nearest to each cluster
  std::optional<double> recall;       ///< k-NN recall, where the system measures it (fashion)
};

struct stability_numbers {
  double l_eff_median = 0;          ///< median over samples of each sample's mean L_eff over the measured steps
  double l_eff_cumulative_iqr = 0;  ///< sum over measured steps of the IQR of L_eff across samples
  std::vector<dd::sensitivity_step> l_eff_steps;
  double delta_refine = 0;          ///< mean over samples, N vs 2N steps, normalized by the data's RMS
  double delta_refine_normalizer = 0;
  double amplification_median = 0;  ///< ||x0' - x0|| / ||delta|| over samples
  double amplification_mean = 0;
  double amplification_q3 = 0;
};

struct alignment_numbers {
  std::optional<double> mean_rank;  ///< pooled over the steps nearest to t = 0.3, 0.5, 0.7
  std::vector<std::pair<double, std::optional<double>>> rank_at;       ///< (t, mean rank) at those steps
  std::vector<std::pair<double, std::optional<double>>> rank_profile;  ///< (t, mean rank) at every step
  std::optional<double> angular_gap;  ///< (theta_non - theta_sel) / theta_non, pooled; empty when undefined
  std::optional<double> selected_angle, unselected_angle;  ///< radians
};

struct disagreement_numbers {
  double integrated_mean = 0;  ///< mean over samples of the trajectory-integrated disagreement
  double integrated_sd = 0;    ///< its standard deviation over samples
  std::vector<dd::score_bin> quartiles;  ///< by integrated disagreement; quality_mean = mean per-sample NLL
  bool monotonic = false;       ///< NLL rises strictly from Q1 to Q4
  dd::spearman_result spearman;  ///< rho(integrated disagreement, per-sample NLL)
  std::vector<double> per_sample;      ///< I_r
  std::vector<double> per_sample_nll;  ///< -log p(x_r)
};

struct cost_numbers {
  double expert_evaluations_per_sample = 0;  ///< in the plain sampling run
  double relative_cost = 0;                  ///< vs the full ensemble's K per row and call
  std::size_t field_evaluations = 0;         ///< calls of the routed field in the plain run
  double sampling_seconds = 0;               ///< the plain sampling run
  double study_seconds = 0;                  ///< everything measured for the policy
  double diagnostic_expert_evaluations_per_sample = 0;  ///< the routing observer's K per step
};

struct policy_result {
  std::string key;   ///< command-line / JSON name
  std::string name;  ///< ddm's name of the policy
  quality_numbers quality;
  stability_numbers stability;
  alignment_numbers alignment;
  disagreement_numbers disagreement;
  cost_numbers cost;
  bool observed_run_bit_identical = false;  ///< the observed run reproduced the plain run's samples
  std::vector<double> sample_preview;  ///< the first rows of the final samples (row-major, D values each)
};

/// What measure_policy gives back: the numbers measured where the samples live (quality, per-sample
/// NLL, quartiles and Spearman still empty) and the plain run's samples on the host, in double (a
/// float sample converts exactly).
struct measurement {
  policy_result result;
  ddm::batch<double> samples;  // (B, D)
};

namespace detail {

// A host copy of x (from any memory space): one copy, and one wait on a device.
template <class T, class Space>
ddm::batch<T> host_copy(const ddm::execution_context<Space>& ctx, ddm::batch_view<const T, Space> x) {
  ddm::batch<T> h(x.rows(), x.cols());
  ddm::copy(ctx, h.view(), x);
  return h;
}

template <class To, class From>
ddm::batch<To> convert(ddm::batch_view<const From> x) {
  ddm::batch<To> out(x.rows(), x.cols());
  for (ddm::index_t r = 0; r < x.rows(); ++r)
    for (ddm::index_t c = 0; c < x.cols(); ++c) out(r, c) = static_cast<To>(x(r, c));
  return out;
}

template <class T>
bool same_bits(ddm::batch_view<const T> a, ddm::batch_view<const T> b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (ddm::index_t r = 0; r < a.rows(); ++r)
    if (std::memcmp(a.row(r), b.row(r), sizeof(T) * static_cast<std::size_t>(a.cols())) != 0) return false;
  return true;
}

// Waits for the work enqueued on a device (for wall times); nothing to wait for on the host.
template <class Space>
void finish_work(const ddm::execution_context<Space>& ctx) {
  if constexpr (!Space::host_accessible) ctx.synchronize();
}

// RMS over all coordinates of the true data, from its exact mean and covariance.
inline double data_rms(const ds::analytic_ddm& model) {
  double s = 0;
  for (double m : model.mean()) s += m * m;
  const auto c = model.covariance();
  for (ddm::index_t i = 0; i < c.rows(); ++i) s += c(i, i);
  return std::sqrt(s / static_cast<double>(model.dim()));
}

inline std::string tag(double tau, const std::string& key) { return "tau " + std::to_string(tau).substr(0, 4) + ", " + key + ": "; }

// Delta_refine (N vs 2N steps from the same noise, normalized by data_rms: the same scale for
// every row; the default, the RMS of the fine samples, would vary with the policy) and the
// end-to-end amplification of a perturbation of the noise (the same perturbation stream for every
// row, so that the rows' perturbations match). Shared by every row the study measures.
template <class T, class Space, class Field, class Schedule, class Integrator>
void measure_convergence(const ddm::execution_context<Space>& ctx, Field& field, ddm::batch_view<const T, Space> noise,
                         const Schedule& schedule, const Integrator& integ, const config& cfg, double data_rms,
                         stability_numbers& out, const progress& prog, const std::string& tag) {
  prog.note(tag + "Delta_refine (N vs 2N steps)");
  const auto refine = dd::step_refinement(ctx, field, noise, schedule, integ, {.data_rms = data_rms});
  out.delta_refine = refine.mean;
  out.delta_refine_normalizer = refine.normalizer;

  prog.note(tag + "perturbation amplification");
  constexpr std::uint64_t perturbation_stream = 0x9E7;
  const auto amp =
      dd::perturbation_amplification(ctx, field, noise, cfg.epsilon, cfg.seed, schedule, integ, perturbation_stream);
  const double ps[] = {0.5, 0.75};
  const auto aq = dd::quantiles(amp.amplification, ps);
  out.amplification_median = aq[0];
  out.amplification_q3 = aq[1];
  double sum = 0;
  for (double v : amp.amplification) sum += v;
  out.amplification_mean = sum / static_cast<double>(amp.amplification.size());
}

}  // namespace detail

/// What the measurements need of the system besides its experts and router: the state's size,
/// the clusters' centroids in the state's space (alignment ranks) and the data's RMS over all
/// coordinates (the common scale of Delta_refine).
struct system_geometry {
  ddm::index_t dim = 0;
  ddm::batch_view<const double> centroids;  // (K, D)
  double data_rms = 1.0;
};

/// Every number of one policy at router temperature tau that the sampler and the observers give,
/// with states of T in Space, the experts and router of `source`, and integrator `integ`.
template <class T, class Space, class Source, class Integrator>
measurement measure_policy(const config& cfg, const system_geometry& geo, const Source& source,
                           const std::string& key, double tau, const Integrator& integ, const progress& prog,
                           const std::string& row_key = {}) {
  const auto t_start = std::chrono::steady_clock::now();
  const ddm::execution_context<Space> ctx = source.context();
  const auto schedule = ddm::schedules::uniform(cfg.steps);
  auto field = source.template routed_field<T>(tau, study_policy::from_key(key, cfg.t_switch));
  const auto b = cfg.samples;
  const auto d = geo.dim;
  measurement out;
  policy_result& res = out.result;
  res.key = row_key.empty() ? key : row_key;  // a baseline's row runs a study policy under its own name
  res.name = field.policy().name();
  const std::string tag = detail::tag(tau, res.key);

  ddm::batch<T, Space> noise(ctx, b, d);
  ddm::fill_normal(ctx, noise.view(), cfg.seed);

  // 1. A plain run, timed: the samples and the cost.
  prog.note(tag + "sampling");
  ddm::batch<T, Space> x(ctx, b, d);
  ddm::copy(ctx, x.view(), noise.cview());
  field.reset_counts();
  detail::finish_work(ctx);
  const auto t0 = std::chrono::steady_clock::now();
  const auto run = ddm::sample(ctx, ddm::sample_options{}, field, x.view(), schedule, integ);
  detail::finish_work(ctx);
  res.cost.sampling_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.cost.field_evaluations = run.field_evaluations;
  res.cost.expert_evaluations_per_sample = static_cast<double>(field.expert_evaluations()) / static_cast<double>(b);
  res.cost.relative_cost = field.relative_cost();
  const auto samples = detail::host_copy(ctx, x.cview());
  if constexpr (std::is_same_v<T, double>) {
    out.samples = detail::host_copy(ddm::host_context{}, samples.cview());
  } else {
    out.samples = detail::convert<double>(samples.cview());
  }

  // 2. The same noise again with the observers: L_eff, disagreement, angles, alignment.
  prog.note(tag + "observing (L_eff, disagreement, angles, ranks)");
  ddm::copy(ctx, x.view(), noise.cview());
  auto sens = dd::make_trajectory_sensitivity<T, Space>(field, {.every = cfg.leff_every}, ctx);
  const auto centroids_host = detail::convert<T>(geo.centroids);
  ddm::batch<T, Space> centroids(ctx, centroids_host.rows(), centroids_host.cols());
  ddm::copy(ctx, centroids.view(), centroids_host.cview());
  auto routing = dd::make_routing_observer<T, Space>(field, schedule, centroids.cview(),
                                                     {.alignment_every_step = true}, {}, ctx);
  ddm::sample(ctx, ddm::sample_options{}, field, x.view(), schedule, integ, sens, routing);
  res.observed_run_bit_identical = detail::same_bits(detail::host_copy(ctx, x.cview()).cview(), samples.cview());

  res.stability.l_eff_median = dd::median(sens.row_mean());
  res.stability.l_eff_cumulative_iqr = sens.cumulative_iqr();
  res.stability.l_eff_steps = sens.steps();

  res.alignment.mean_rank = routing.alignment_mean_rank();
  for (const auto& a : routing.alignment()) res.alignment.rank_at.emplace_back(a.t, a.pooled_mean_rank());
  for (const auto& r : routing.profile().records()) res.alignment.rank_profile.emplace_back(r.t, r.mean_rank);
  res.alignment.angular_gap = routing.angular().relative_gap();
  res.alignment.selected_angle = routing.angular().selected_mean();
  res.alignment.unselected_angle = routing.angular().unselected_mean();
  res.cost.diagnostic_expert_evaluations_per_sample =
      static_cast<double>(routing.expert_evaluations()) / static_cast<double>(b);

  auto& dis = res.disagreement;
  dis.per_sample = routing.integrated_disagreement();
  double sum = 0;
  for (double v : dis.per_sample) sum += v;
  dis.integrated_mean = sum / static_cast<double>(b);
  double ss = 0;
  for (double v : dis.per_sample) ss += (v - dis.integrated_mean) * (v - dis.integrated_mean);
  dis.integrated_sd = std::sqrt(ss / static_cast<double>(b));

  // 3. and 4. Delta_refine and the end-to-end amplification of a perturbation of the noise.
  detail::measure_convergence(ctx, field, noise.cview(), schedule, integ, cfg, geo.data_rms, res.stability, prog, tag);

  res.cost.study_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return out;
}

}  // namespace paradox
