#pragma once
// The measurements of one routing policy on the analytic DDM: quality, stability, alignment,
// disagreement and cost. measure_policy<Space>() creates the routed field, the sampler's buffers
// and the observers in one memory space, so that a device build can run the same study by
// instantiating it for ddm::cuda_space (with device experts and router); the per-sample results
// come back to the host for the quality measures and statistics.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <ddm/ddm.hpp>
#include <ddm/synthetic/quality.hpp>

namespace paradox {

namespace dd = ddm::diagnostics;
namespace ds = ddm::synthetic;

enum class device { cpu, cuda };

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
  std::size_t leff_every = 1;
  double epsilon = 1e-3;   ///< perturbation of the noise: delta = epsilon z
  std::size_t permutations = 9999;
  std::size_t bootstrap = 1000;
  bool quiet = false;
};

/// The policies the study knows, by the name used on the command line and in the JSON.
inline const std::vector<std::string>& known_policies() {
  static const std::vector<std::string> names{"top1", "top2", "full", "full_then_top2", "top2_then_full"};
  return names;
}

template <class Space>
[[nodiscard]] ddm::any_routing_policy<double, Space> make_policy(const std::string& key, double t_switch) {
  if (key == "top1") return ddm::top_1();
  if (key == "top2") return ddm::top_2();
  if (key == "full") return ddm::full_ensemble{};
  if (key == "full_then_top2") return ddm::scheduled{t_switch, ddm::full_ensemble{}, ddm::top_2()};
  if (key == "top2_then_full") return ddm::scheduled{t_switch, ddm::top_2(), ddm::full_ensemble{}};
  throw std::invalid_argument("unknown policy '" + key + "'");
}

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
};

namespace detail {

// The samples on the host, for the quality measures.
template <class Space>
ddm::batch<double> host_samples(const ddm::execution_context<Space>& ctx, ddm::batch_view<const double, Space> x) {
  if constexpr (std::is_same_v<Space, ddm::host_space>) {
    ddm::batch<double> h(x.rows(), x.cols());
    ddm::copy(ctx, h.view(), x);
    return h;
  } else {
    return to_host(ctx, x);  // found by argument-dependent lookup in the device build (ddm/cuda)
  }
}

inline bool same_bits(ddm::batch_view<const double> a, ddm::batch_view<const double> b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (ddm::index_t r = 0; r < a.rows(); ++r)
    if (std::memcmp(a.row(r), b.row(r), sizeof(double) * static_cast<std::size_t>(a.cols())) != 0) return false;
  return true;
}

// RMS over all coordinates of the true data, from its exact mean and covariance.
inline double data_rms(const ds::analytic_ddm& model) {
  double s = 0;
  for (double m : model.mean()) s += m * m;
  const auto c = model.covariance();
  for (ddm::index_t i = 0; i < c.rows(); ++i) s += c(i, i);
  return std::sqrt(s / static_cast<double>(model.dim()));
}

}  // namespace detail

/// Every number of one policy at router temperature tau, with integrator `integ`.
template <class Space, class Integrator>
policy_result measure_policy(const config& cfg, const ds::analytic_ddm& model, const std::string& key, double tau,
                             const Integrator& integ, const progress& prog) {
  const auto t_start = std::chrono::steady_clock::now();
  const ddm::execution_context<Space> ctx{};
  const auto schedule = ddm::schedules::uniform(cfg.steps);
  auto field = ddm::make_routed_field<double, Space>(model.experts(), model.router(tau),
                                                     make_policy<Space>(key, cfg.t_switch), ctx);
  const auto b = cfg.samples;
  const auto d = model.dim();
  policy_result res;
  res.key = key;
  res.name = field.policy().name();
  const std::string tag = "tau " + std::to_string(tau).substr(0, 4) + ", " + key + ": ";

  ddm::batch<double, Space> noise(ctx, b, d);
  ddm::fill_normal(ctx, noise.view(), cfg.seed);

  // 1. A plain run, timed: the samples and the cost.
  prog.note(tag + "sampling");
  ddm::batch<double, Space> x(ctx, b, d);
  ddm::copy(ctx, x.view(), noise.cview());
  field.reset_counts();
  const auto t0 = std::chrono::steady_clock::now();
  const auto run = ddm::sample(ctx, ddm::sample_options{}, field, x.view(), schedule, integ);
  res.cost.sampling_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.cost.field_evaluations = run.field_evaluations;
  res.cost.expert_evaluations_per_sample = static_cast<double>(field.expert_evaluations()) / static_cast<double>(b);
  res.cost.relative_cost = field.relative_cost();

  const auto samples = detail::host_samples(ctx, x.cview());
  const auto q = ds::evaluate_quality(model, samples.cview());
  res.quality = {q.frechet,        q.nll, q.modes.coverage, q.modes.precision, q.modes.cluster_coverage,
                 q.modes.cluster_tv_distance, q.modes.cluster_share};
  res.disagreement.per_sample_nll.resize(static_cast<std::size_t>(b));
  for (ddm::index_t r = 0; r < b; ++r)
    res.disagreement.per_sample_nll[static_cast<std::size_t>(r)] =
        -model.log_density(std::span<const double>(samples.cview().row(r), static_cast<std::size_t>(d)));

  // 2. The same noise again with the observers: L_eff, disagreement, angles, alignment.
  prog.note(tag + "observing (L_eff, disagreement, angles, ranks)");
  ddm::copy(ctx, x.view(), noise.cview());
  auto sens = dd::make_trajectory_sensitivity<double, Space>(field, {.every = cfg.leff_every}, ctx);
  auto centroids = ddm::batch<double, Space>(ctx, model.centroids().rows(), model.centroids().cols());
  ddm::copy(ctx, centroids.view(), model.centroids());
  auto routing = dd::make_routing_observer<double, Space>(field, schedule, centroids.cview(),
                                                          {.alignment_every_step = true}, {}, ctx);
  ddm::sample(ctx, ddm::sample_options{}, field, x.view(), schedule, integ, sens, routing);
  res.observed_run_bit_identical = detail::same_bits(detail::host_samples(ctx, x.cview()).cview(), samples.cview());

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
  dis.quartiles = dd::bin_by_score(dis.per_sample, dis.per_sample_nll, 4);
  dis.monotonic = true;
  for (std::size_t i = 1; i < dis.quartiles.size(); ++i)
    dis.monotonic = dis.monotonic && dis.quartiles[i].quality_mean > dis.quartiles[i - 1].quality_mean;
  prog.note(tag + "Spearman test");
  dis.spearman = dd::spearman_test(dis.per_sample, dis.per_sample_nll,
                                   {.permutations = cfg.permutations, .bootstrap = cfg.bootstrap, .seed = cfg.seed});

  // 3. Delta_refine: N vs 2N steps from the same noise, normalized by the true data's RMS (the same
  //    scale for every policy; the default, the RMS of the fine samples, would vary with the policy).
  prog.note(tag + "Delta_refine (N vs 2N steps)");
  const auto refine = dd::step_refinement(ctx, field, noise.cview(), schedule, integ, {.data_rms = detail::data_rms(model)});
  res.stability.delta_refine = refine.mean;
  res.stability.delta_refine_normalizer = refine.normalizer;

  // 4. End-to-end amplification of a perturbation of the noise.
  prog.note(tag + "perturbation amplification");
  constexpr std::uint64_t perturbation_stream = 0x9E7;
  const auto amp = dd::perturbation_amplification(ctx, field, noise.cview(), cfg.epsilon, cfg.seed, schedule, integ,
                                                  perturbation_stream);
  const double ps[] = {0.5, 0.75};
  const auto aq = dd::quantiles(amp.amplification, ps);
  res.stability.amplification_median = aq[0];
  res.stability.amplification_q3 = aq[1];
  double asum = 0;
  for (double v : amp.amplification) asum += v;
  res.stability.amplification_mean = asum / static_cast<double>(b);

  res.cost.study_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return res;
}

/// The study at one temperature: every policy of the configuration.
struct tau_result {
  double tau = 0;
  std::vector<policy_result> policies;
};

/// The quality measures of as many true samples as the study draws: the floor of each measure at
/// this sample size (the Frechet distance of a finite sample is biased by O(1/n)).
inline quality_numbers reference_quality(const config& cfg, const ds::analytic_ddm& model) {
  const auto data = model.sample_data<double>(cfg.samples, cfg.seed);
  const auto q = ds::evaluate_quality(model, data.cview());
  return {q.frechet,         q.nll, q.modes.coverage, q.modes.precision, q.modes.cluster_coverage,
          q.modes.cluster_tv_distance, q.modes.cluster_share};
}

template <class Space, class Integrator>
tau_result run_study(const config& cfg, const ds::analytic_ddm& model, double tau, const Integrator& integ,
                     const progress& prog) {
  tau_result out;
  out.tau = tau;
  for (const auto& key : cfg.policies) out.policies.push_back(measure_policy<Space>(cfg, model, key, tau, integ, prog));
  return out;
}

}  // namespace paradox
