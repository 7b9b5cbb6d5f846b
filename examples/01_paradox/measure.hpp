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
#include <vector>

#include <ddm/ddm.hpp>

#include "shard_observers.hpp"

namespace paradox {

namespace dd = ddm::diagnostics;
namespace ds = ddm::synthetic;

enum class device { cpu, cuda };

/// The value type of the states, velocities and the sampler's buffers. The analytic DDM's per-row
/// code runs in double either way; float rounds its outputs and every update of the sampler.
enum class precision { float32, float64 };

[[nodiscard]] inline const char* to_string(precision p) noexcept { return p == precision::float32 ? "float" : "double"; }
[[nodiscard]] inline const char* to_string(device d) noexcept { return d == device::cpu ? "cpu" : "cuda"; }

struct cluster;  // distributed.hpp: this process's place among the ranks of an mpirun

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
  std::string placement = "round-robin";  ///< under mpirun: where the experts live (distributed.hpp)
  const cluster* ranks = nullptr;  ///< under mpirun with more than one process; else nullptr
};

/// The integrators the study offers by name (ddm::with_integrator's list): the fixed-step ones
/// whose step count is the study's N (Delta_refine compares N with 2N steps; an adaptive pair
/// chooses its own steps). Each one instantiates the whole measurement, on the device too, so the
/// list stays short.
using study_integrators = ddm::integrator_list<ddm::euler, ddm::heun, ddm::dpmpp_2m, ddm::dpmpp_3m>;

/// The analytic DDM's experts and router on the host.
struct host_source {
  const ds::analytic_ddm* model;

  [[nodiscard]] ddm::host_context context() const noexcept { return {}; }
  [[nodiscard]] auto experts() const { return model->experts(); }
  [[nodiscard]] auto router(double tau) const { return model->router(tau); }
  template <class T>
  [[nodiscard]] auto routed_field(double tau, const ddm::builtin_policy& policy) const {
    return ddm::make_routed_field<T, ddm::host_space>(experts(), router(tau), policy, context());
  }
};

/// A measurement in one process: the whole batch is here.
struct one_process {};

/// A source whose experts are spread over processes, each sampling its shard of the batch
/// (distributed.hpp): per-row results are gathered before any statistic, counts summed.
template <class S>
concept sharded_source = requires(const S& s, std::size_t n, const std::vector<double>& rows) {
  { s.shard().first } -> std::convertible_to<ddm::index_t>;
  { s.sum(n) } -> std::convertible_to<std::size_t>;
  { s.gather(rows) } -> std::convertible_to<std::vector<double>>;
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

/// The L_eff numbers of a sharded run: each step's per-row values (this rank's shard_sensitivity)
/// gathered over the ranks in row order (rows.gather), then the whole batch's statistics.
template <class Sensitivity, class Rows>
void set_sharded_l_eff(stability_numbers& out, const Sensitivity& sens, Rows&& rows) {
  std::vector<std::vector<double>> values;
  for (const auto& step : sens.values()) values.push_back(rows.gather(step));
  const auto l_eff = summarize_sensitivity(sens.when(), values);
  out.l_eff_median = dd::median(l_eff.row_mean);
  out.l_eff_cumulative_iqr = l_eff.steps.empty() ? 0.0 : l_eff.steps.back().cumulative_iqr;
  out.l_eff_steps = l_eff.steps;
}

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
  std::string placement;  ///< under mpirun: which ranks held which experts (ddm::mpi::placement::describe)
  std::vector<double> sample_preview;  ///< the first rows of the final samples (row-major, D values each)
};

/// What measure_policy gives back: the numbers measured where the samples live (quality, per-sample
/// NLL, quartiles and Spearman still empty) and the plain run's samples on the host, in double (a
/// float sample converts exactly).
struct measurement {
  policy_result result;
  ddm::batch<double> samples;  // (B, D)
};


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

inline std::string progress_tag(double tau, const std::string& key) { return "tau " + std::to_string(tau).substr(0, 4) + ", " + key + ": "; }

// Delta_refine (N vs 2N steps from the same noise, normalized by data_rms: the same scale for
// every row; the default, the RMS of the fine samples, would vary with the policy) and the
// end-to-end amplification of a perturbation of the noise (the same perturbation stream for every
// row, so that the rows' perturbations match). Shared by every row the study measures.
//
// With a sharded source (noise: this rank's rows), the per-row results are gathered and the mean
// taken over the whole batch as step_refinement takes it; the perturbation is drawn for the whole
// batch and each rank takes its rows, as with the noise.
template <class T, class Space, class Field, class Schedule, class Integrator, class Source = one_process>
void measure_convergence(const ddm::execution_context<Space>& ctx, Field& field, ddm::batch_view<const T, Space> noise,
                         const Schedule& schedule, const Integrator& integ, const config& cfg, double data_rms,
                         stability_numbers& out, const progress& prog, const std::string& tag,
                         const Source& source = {}) {
  prog.note(tag + "Delta_refine (N vs 2N steps)");
  const auto refine = dd::step_refinement(ctx, field, noise, schedule, integ, {.data_rms = data_rms});
  out.delta_refine = refine.mean;
  out.delta_refine_normalizer = refine.normalizer;
  if constexpr (sharded_source<Source>) {
    const auto per_row = source.gather(refine.per_row);
    double sum = 0;
    for (double v : per_row) sum += v;
    out.delta_refine = sum / static_cast<double>(per_row.size());
  }

  prog.note(tag + "perturbation amplification");
  constexpr std::uint64_t perturbation_stream = 0x9E7;
  std::vector<double> amplification;
  if constexpr (sharded_source<Source>) {
    ddm::batch<T, Space> all(ctx, source.total_rows(), noise.cols());
    ddm::fill_normal(ctx, all.view(), cfg.seed, perturbation_stream);
    ddm::batch<T, Space> delta(ctx, noise.rows(), noise.cols());
    ddm::copy(ctx, delta.view(), all.cview().subrows(source.shard().first, noise.rows()));
    ddm::lincomb(ctx, delta.view(), {cfg.epsilon}, delta);
    amplification = source.gather(dd::perturbation_amplification(ctx, field, noise, delta.cview(), schedule, integ).amplification);
  } else {
    amplification =
        dd::perturbation_amplification(ctx, field, noise, cfg.epsilon, cfg.seed, schedule, integ, perturbation_stream)
            .amplification;
  }
  const auto& amp = std::as_const(amplification);
  const double ps[] = {0.5, 0.75};
  const auto aq = dd::quantiles(amp, ps);
  out.amplification_median = aq[0];
  out.amplification_q3 = aq[1];
  double sum = 0;
  for (double v : amp) sum += v;
  out.amplification_mean = sum / static_cast<double>(amp.size());
}


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
  auto field = source.template routed_field<T>(tau, ddm::policy_by_name(key, cfg.t_switch));
  const auto b = cfg.samples;
  const auto d = geo.dim;
  measurement out;
  policy_result& res = out.result;
  res.key = row_key.empty() ? key : row_key;  // a baseline's row runs a study policy under its own name
  res.name = field.policy().name();
  const std::string tag = progress_tag(tau, res.key);

  // Under mpirun this rank samples rows [first, first + rows) of the batch: the whole batch's
  // noise is drawn and its rows taken, so that they are the rows one process samples.
  constexpr bool sharded = sharded_source<Source>;
  ddm::index_t first = 0;
  ddm::index_t rows = b;
  if constexpr (sharded) {
    first = source.shard().first;
    rows = source.shard().rows;
  }
  ddm::batch<T, Space> noise(ctx, rows, d);
  if constexpr (sharded) {
    ddm::batch<T, Space> all(ctx, b, d);
    ddm::fill_normal(ctx, all.view(), cfg.seed);
    ddm::copy(ctx, noise.view(), all.cview().subrows(first, rows));
  } else {
    ddm::fill_normal(ctx, noise.view(), cfg.seed);
  }

  // 1. A plain run, timed: the samples and the cost.
  prog.note(tag + "sampling");
  ddm::batch<T, Space> x(ctx, rows, d);
  ddm::copy(ctx, x.view(), noise.cview());
  field.reset_counts();
  finish_work(ctx);
  const auto t0 = std::chrono::steady_clock::now();
  const auto run = ddm::sample(ctx, ddm::sample_options{}, field, x.view(), schedule, integ);
  finish_work(ctx);
  res.cost.sampling_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.cost.field_evaluations = run.field_evaluations;
  if constexpr (sharded) {
    // relative_cost's own formula over the sums: integer counts, so the same bits.
    const auto evaluations = source.sum(field.expert_evaluations());
    const auto routed = source.sum(field.rows_routed());
    res.cost.expert_evaluations_per_sample = static_cast<double>(evaluations) / static_cast<double>(b);
    res.cost.relative_cost = routed == 0 ? 0.0
                                         : static_cast<double>(evaluations) /
                                               (static_cast<double>(routed) * static_cast<double>(field.num_experts()));
  } else {
    res.cost.expert_evaluations_per_sample = static_cast<double>(field.expert_evaluations()) / static_cast<double>(b);
    res.cost.relative_cost = field.relative_cost();
  }
  const auto samples = host_copy(ctx, x.cview());
  if constexpr (std::is_same_v<T, double>) {
    out.samples = host_copy(ddm::host_context{}, samples.cview());
  } else {
    out.samples = convert<double>(samples.cview());
  }
  if constexpr (sharded) out.samples = source.gather_rows(out.samples.cview());

  // 2. The same noise again with the observers: L_eff, disagreement, angles, alignment.
  prog.note(tag + "observing (L_eff, disagreement, angles, ranks)");
  ddm::copy(ctx, x.view(), noise.cview());
  const dd::sensitivity_options sens_options{.every = cfg.leff_every};
  const auto centroids_host = convert<T>(geo.centroids);
  ddm::batch<T, Space> centroids(ctx, centroids_host.rows(), centroids_host.cols());
  ddm::copy(ctx, centroids.view(), centroids_host.cview());
  auto routing = dd::make_routing_observer<T, Space>(ctx, field, schedule, centroids.cview(),
                                                     {.alignment_every_step = true});
  auto& dis = res.disagreement;
  if constexpr (sharded) {
    // The per-row results of every rank, then the statistics the observers would have computed
    // over the whole batch, in its row order (shard_observers.hpp).
    shard_sensitivity<T, decltype(field)> sens(ctx, field, sens_options, first, b);
    shard_routing_rows<T, decltype(routing)> routing_rows(ctx, routing, field.num_experts(), centroids.cview());
    ddm::sample(ctx, ddm::sample_options{}, field, x.view(), schedule, integ, sens, routing, routing_rows);
    res.observed_run_bit_identical = source.all(same_bits(host_copy(ctx, x.cview()).cview(), samples.cview()));

    set_sharded_l_eff(res.stability, sens, source);

    dd::angular_deviation_summary angles;
    dd::alignment_profile profile;
    double rank_sum = 0.0;  // routing_observer::alignment_mean_rank's pooling
    std::size_t rank_pairs = 0;
    for (const auto& step : routing_rows.steps()) {
      angles.add(source.gather(step.angles));
      const auto ranks = source.gather(step.ranks);
      profile.add(ranks);
      if (!step.alignment_step) continue;
      res.alignment.rank_at.emplace_back(ranks.t, ranks.pooled_mean_rank());
      if (const auto m = ranks.pooled_mean_rank()) {
        rank_sum += *m * static_cast<double>(ranks.pairs);
        rank_pairs += ranks.pairs;
      }
    }
    if (rank_pairs > 0) res.alignment.mean_rank = rank_sum / static_cast<double>(rank_pairs);
    for (const auto& r : profile.records()) res.alignment.rank_profile.emplace_back(r.t, r.mean_rank);
    res.alignment.angular_gap = angles.relative_gap();
    res.alignment.selected_angle = angles.selected_mean();
    res.alignment.unselected_angle = angles.unselected_mean();
    res.cost.diagnostic_expert_evaluations_per_sample =
        static_cast<double>(source.sum(routing.expert_evaluations())) / static_cast<double>(b);
    dis.per_sample = source.gather(routing.integrated_disagreement());
  } else {
    auto sens = dd::make_trajectory_sensitivity<T, Space>(ctx, field, sens_options);
    ddm::sample(ctx, ddm::sample_options{}, field, x.view(), schedule, integ, sens, routing);
    res.observed_run_bit_identical = same_bits(host_copy(ctx, x.cview()).cview(), samples.cview());

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
    dis.per_sample = routing.integrated_disagreement();
  }

  double sum = 0;
  for (double v : dis.per_sample) sum += v;
  dis.integrated_mean = sum / static_cast<double>(b);
  double ss = 0;
  for (double v : dis.per_sample) ss += (v - dis.integrated_mean) * (v - dis.integrated_mean);
  dis.integrated_sd = std::sqrt(ss / static_cast<double>(b));

  // 3. and 4. Delta_refine and the end-to-end amplification of a perturbation of the noise.
  measure_convergence(ctx, field, noise.cview(), schedule, integ, cfg, geo.data_rms, res.stability, prog, tag, source);

  res.cost.study_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return out;
}

}  // namespace paradox
