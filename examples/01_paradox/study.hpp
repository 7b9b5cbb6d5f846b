#pragma once
// The measurements of one routing policy on the analytic DDM: quality, stability, alignment,
// disagreement and cost. measure_policy (measure.hpp) runs the sampler and the observers in the
// memory space of its source of experts and router; finish_policy adds, on the host, what needs
// the final samples: the exact quality measures, the per-sample NLL, the quartiles of
// disagreement and the Spearman test. Needs Eigen (the exact Frechet distance, ddm::eigen).

#include <chrono>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <ddm/synthetic/quality.hpp>

#include "measure.hpp"

namespace paradox {

/// The numbers that need the final samples, from the samples measure_policy brought to the host.
inline policy_result finish_policy(const config& cfg, const ds::analytic_ddm& model, measurement m, double tau,
                                   const progress& prog) {
  const auto t_start = std::chrono::steady_clock::now();
  policy_result& res = m.result;
  const auto b = m.samples.rows();
  const auto d = m.samples.cols();
  const auto q = ds::evaluate_quality(model, m.samples.cview());
  res.quality = {q.frechet,        q.nll, q.modes.coverage, q.modes.precision, q.modes.cluster_coverage,
                 q.modes.cluster_tv_distance, q.modes.cluster_share};
  auto& dis = res.disagreement;
  dis.per_sample_nll.resize(static_cast<std::size_t>(b));
  for (ddm::index_t r = 0; r < b; ++r)
    dis.per_sample_nll[static_cast<std::size_t>(r)] =
        -model.log_density(std::span<const double>(m.samples.cview().row(r), static_cast<std::size_t>(d)));
  dis.quartiles = dd::bin_by_score(dis.per_sample, dis.per_sample_nll, 4);
  dis.monotonic = true;
  for (std::size_t i = 1; i < dis.quartiles.size(); ++i)
    dis.monotonic = dis.monotonic && dis.quartiles[i].quality_mean > dis.quartiles[i - 1].quality_mean;
  prog.note(detail::tag(tau, res.key) + "Spearman test");
  dis.spearman = dd::spearman_test(dis.per_sample, dis.per_sample_nll,
                                   {.permutations = cfg.permutations, .bootstrap = cfg.bootstrap, .seed = cfg.seed});
  res.cost.study_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return std::move(res);
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

/// Every policy of the configuration at temperature tau: measure(key) gives a policy's
/// measurement (on the host or on a device), finish_policy the rest.
template <class Measure>
tau_result run_study(const config& cfg, const ds::analytic_ddm& model, double tau, const progress& prog,
                     Measure&& measure) {
  tau_result out;
  out.tau = tau;
  for (const auto& key : cfg.policies) out.policies.push_back(finish_policy(cfg, model, measure(key), tau, prog));
  return out;
}

}  // namespace paradox
