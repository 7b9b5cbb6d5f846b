#pragma once
// The measurements of one routing policy on a DDM (a study_system, system.hpp): quality,
// stability, alignment, disagreement and cost. measure_policy (measure.hpp) runs the sampler and
// the observers in the memory space of its source of experts and router; finish_policy adds, on
// the host, what needs the final samples: the system's quality measures, the per-sample quality,
// the quartiles of disagreement and the Spearman test.

#include <algorithm>
#include <chrono>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "measure.hpp"
#include "system.hpp"

namespace paradox {

/// The numbers that need the final samples, from the samples measure_policy brought to the host.
inline policy_result finish_policy(const config& cfg, const study_system& sys, measurement m, double tau,
                                   const progress& prog) {
  const auto t_start = std::chrono::steady_clock::now();
  policy_result& res = m.result;
  const auto b = m.samples.rows();
  const auto d = m.samples.cols();
  res.quality = sys.quality(m.samples.cview());
  auto& dis = res.disagreement;
  dis.per_sample_nll = sys.per_sample_quality(m.samples.cview());
  const auto preview = std::min<ddm::index_t>(b, 64);
  res.sample_preview.assign(m.samples.cview().row(0), m.samples.cview().row(0) + preview * d);
  if (!dis.per_sample.empty()) {
    dis.quartiles = dd::bin_by_score(dis.per_sample, dis.per_sample_nll, 4);
    dis.monotonic = true;
    for (std::size_t i = 1; i < dis.quartiles.size(); ++i)
      dis.monotonic = dis.monotonic && dis.quartiles[i].quality_mean > dis.quartiles[i - 1].quality_mean;
    prog.note(progress_tag(tau, res.key) + "Spearman test");
    dis.spearman = dd::spearman_test(dis.per_sample, dis.per_sample_nll,
                                     {.permutations = cfg.permutations, .bootstrap = cfg.bootstrap, .seed = cfg.seed});
  }
  res.cost.study_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return std::move(res);
}

/// The study at one temperature: every policy of the configuration.
struct tau_result {
  double tau = 0;
  std::vector<policy_result> policies;
};

/// Every policy of the configuration at temperature tau: measure(key) gives a policy's
/// measurement (on the host or on a device), finish_policy the rest.
template <class Measure>
tau_result run_study(const config& cfg, const study_system& sys, double tau, const progress& prog, Measure&& measure) {
  tau_result out;
  out.tau = tau;
  for (const auto& key : cfg.policies) out.policies.push_back(finish_policy(cfg, sys, measure(key), tau, prog));
  return out;
}

}  // namespace paradox
