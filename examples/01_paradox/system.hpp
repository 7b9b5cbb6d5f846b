#pragma once
// What the study needs of a DDM, whichever it is: the analytic DDM (exact experts, router and
// quality), or a learned DDM loaded from a folder (fashion_system.hpp). The study code asks a
// system for its geometry, the measurement of a policy, the quality of samples and their
// per-sample quality, the floor row of the table, and any extra rows it compares against
// (baselines); everything else (the instruments, the verdicts, JSON, CSV, SVG) is the same for
// every system.

#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "measure.hpp"

namespace paradox {

class study_system {
 public:
  virtual ~study_system() = default;

  /// The --system name.
  [[nodiscard]] virtual std::string name() const = 0;
  [[nodiscard]] virtual std::size_t num_experts() const = 0;
  [[nodiscard]] virtual system_geometry geometry() const = 0;
  /// A study policy's measurement on the host at router temperature tau (measure_policy).
  [[nodiscard]] virtual measurement measure(const config& cfg, const std::string& key, double tau,
                                            const progress& prog) const = 0;
  /// Quality of final samples (B, D).
  [[nodiscard]] virtual quality_numbers quality(ddm::batch_view<const double> samples) const = 0;
  /// One number per sample, lower is better (the analytic DDM's -log p(x); a learned DDM's
  /// k-NN distance in feature space), for the disagreement quartiles and the Spearman test.
  [[nodiscard]] virtual std::vector<double> per_sample_quality(ddm::batch_view<const double> samples) const = 0;
  /// What per_sample_quality is, for the table and the verdicts ("NLL", ...).
  [[nodiscard]] virtual std::string per_sample_quality_name() const = 0;
  /// The quality of as many true samples as the study draws: the floor of each measure.
  [[nodiscard]] virtual quality_numbers reference_quality(const config& cfg) const = 0;
  /// Rows beside the study's policies (not part of the verdicts): the learned systems' monolith
  /// and oracle router. Measured at the main temperature.
  [[nodiscard]] virtual std::vector<policy_result> baselines(const config&, const progress&) const { return {}; }
  /// The first lines of the printed report: model, the sampler's line (the same for every
  /// system), router, columns.
  virtual void print_header(std::FILE* f, const config& cfg, const std::string& sampler_line) const = 0;
  /// The system's entries of the JSON "config" object.
  [[nodiscard]] virtual nlohmann::json describe(const config& cfg) const = 0;
  /// Extra files in the output folder (the learned systems' PNG sample grids).
  virtual void write_extra_outputs(const std::string& /*dir*/, const std::vector<const policy_result*>& /*rows*/) const {}
};

}  // namespace paradox
