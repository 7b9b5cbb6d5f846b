#pragma once
// ddm-paradox under mpirun -np N (built when CMake finds MPI: the target ddm::mpi).
//
// Each rank samples its shard of every batch (ddm::mpi::shard_of: contiguous rows, in rank order)
// and the routed field reaches the experts through a ddm::mpi::distributed_experts: a rank
// evaluates only the experts the placement gives it, on the rows every rank routed to them. The
// noise is drawn for the whole batch and each rank takes its rows, so a rank's rows start where
// one process's do; the router, the policy, the integrator and the analytic experts compute each
// row alone, so every row of every trajectory is the same bits as in one process.
//
// What is per row is gathered to every rank before any statistic is computed (measure.hpp):
// samples, L_eff values, disagreement, angles, ranks, Delta_refine, amplification; counts are
// summed. Every rank then computes the same statistics from the same bits; only rank 0 prints
// and writes files (main.cpp). docs/distributed.md explains which numbers are equal and why.

#include <mpi.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <ddm/mpi.hpp>

#include "measure.hpp"

namespace paradox {

/// This process's place in a distributed run: the ranks and where the experts live.
struct cluster {
  ddm::mpi::communicator comm;
  std::string placement_spec;  ///< --placement: round-robin | balanced | an explicit map
  double timeout_seconds = 600.0;

  [[nodiscard]] int rank() const noexcept { return comm.rank(); }
  [[nodiscard]] int size() const noexcept { return comm.size(); }
};

/// Whether this process was started by mpirun (OpenMPI, or a PMI launcher such as MPICH's
/// Hydra or Slurm): only then does ddm-paradox start MPI, so that a plain run needs no MPI runtime.
[[nodiscard]] inline bool launched_by_mpirun() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(name) != nullptr) return true;
  return false;
}

/// The sum over ranks of n (collective).
[[nodiscard]] inline std::uint64_t sum_over_ranks(const cluster& run, std::uint64_t n) {
  std::uint64_t total = 0;
  MPI_Request request = MPI_REQUEST_NULL;
  ddm::mpi::check(MPI_Iallreduce(&n, &total, 1, MPI_UINT64_T, MPI_SUM, run.comm.get(), &request), "MPI_Iallreduce");
  ddm::mpi::wait_all(std::span<MPI_Request>(&request, 1), run.timeout_seconds, run.comm,
                     [] { return std::string("ddm-paradox: a sum over ranks"); });
  return total;
}

/// This rank's shard of a batch of total_rows rows, and the gathers that give every rank the
/// whole batch's per-row results, in row order; counts summed. What measure_policy and
/// measure_monolith need of a distributed run besides the field (measure.hpp: sharded_source).
class distributed_rows {
 public:
  distributed_rows(const cluster& run, ddm::index_t total_rows)
      : run_(&run), total_(total_rows), shard_(ddm::mpi::shard_of(total_rows, run.comm)) {}

  [[nodiscard]] ddm::mpi::shard shard() const noexcept { return shard_; }
  [[nodiscard]] ddm::index_t total_rows() const noexcept { return total_; }
  [[nodiscard]] const cluster& run() const noexcept { return *run_; }

  /// The (total, D) batch of every rank's rows.
  template <class T>
  [[nodiscard]] ddm::batch<T> gather_rows(ddm::batch_view<const T> local) const {
    ddm::batch<T> all(total_, local.cols());
    ddm::mpi::allgather_rows(run_->comm, local, all.view(), run_->timeout_seconds);
    return all;
  }

  /// One value per row of the shard -> one per row of the batch. Counts travel as doubles: exact
  /// below 2^53.
  template <class U>
  [[nodiscard]] std::vector<U> gather(const std::vector<U>& local) const {
    std::vector<double> in(local.begin(), local.end());
    const auto all = gather_rows(ddm::batch_view<const double>(in.data(), static_cast<ddm::index_t>(in.size()), 1));
    std::vector<U> out(static_cast<std::size_t>(total_));
    for (ddm::index_t r = 0; r < total_; ++r) out[static_cast<std::size_t>(r)] = static_cast<U>(all(r, 0));
    return out;
  }

  [[nodiscard]] std::size_t sum(std::size_t n) const {
    return static_cast<std::size_t>(sum_over_ranks(*run_, static_cast<std::uint64_t>(n)));
  }
  [[nodiscard]] bool all(bool b) const { return sum(b ? 1 : 0) == static_cast<std::size_t>(run_->size()); }

  /// The whole batch's angular deviation at one step.
  [[nodiscard]] dd::angular_deviation_result gather(const dd::angular_deviation_result& a) const {
    dd::angular_deviation_result out;
    out.selected_angle = gather(a.selected_angle);
    out.unselected_angle = gather(a.unselected_angle);
    out.relative_gap = gather(a.relative_gap);
    out.defined = gather(a.defined);
    out.selected_count = gather(a.selected_count);
    out.unselected_count = gather(a.unselected_count);
    out.undefined_angles = sum(a.undefined_angles);
    return out;
  }

  /// The whole batch's alignment ranks at one step.
  [[nodiscard]] dd::alignment_result gather(const dd::alignment_result& a) const {
    dd::alignment_result out;
    out.t = a.t;
    out.mean_rank = gather(a.mean_rank);
    out.selected_count = gather(a.selected_count);
    out.rank_histogram.resize(a.rank_histogram.size());
    for (std::size_t k = 0; k < a.rank_histogram.size(); ++k) out.rank_histogram[k] = sum(a.rank_histogram[k]);
    out.pairs = sum(a.pairs);
    out.rows_without_selection = sum(a.rows_without_selection);
    return out;
  }

 private:
  const cluster* run_;
  ddm::index_t total_;
  ddm::mpi::shard shard_;
};

/// A host source of experts and router (host_source, fashion_source, ...: context(), experts(),
/// router(tau)) whose experts are spread over the ranks of `run` under `placement`, this rank
/// sampling its shard of total_rows rows.
template <class Base>
class distributed_source : public distributed_rows {
 public:
  distributed_source(const Base& base, const cluster& run, ddm::mpi::placement placement, ddm::index_t total_rows)
      : distributed_rows(run, total_rows), base_(&base), placement_(std::move(placement)) {}

  [[nodiscard]] ddm::host_context context() const { return base_->context(); }
  [[nodiscard]] const ddm::mpi::placement& placement() const noexcept { return placement_; }

  template <class T>
  [[nodiscard]] auto routed_field(double tau, const ddm::builtin_policy& policy) const {
    using local_experts = std::decay_t<decltype(base_->experts())>;
    return ddm::make_routed_field<T, ddm::host_space>(
        ddm::mpi::distributed_experts<T, local_experts>(run().comm, placement_, base_->experts(), shard().first,
                                                        {.timeout_seconds = run().timeout_seconds}),
        base_->router(tau), policy, context());
  }

 private:
  const Base* base_;
  ddm::mpi::placement placement_;
};

/// The placement of --placement for one policy: round-robin or an explicit map as given, or
/// "balanced": from the rows each expert evaluates in a short profiling run of the policy (a
/// quarter of the steps, each rank sampling its own shard with every expert, no exchange), with
/// one spare slot per rank for a replica of a hot expert. The placement decides where rows are
/// evaluated, never what they are: the numbers are the same under every placement.
template <class T, class Base, class Integrator>
[[nodiscard]] ddm::mpi::placement choose_placement(const cluster& run, const config& cfg, const Base& base,
                                                   ddm::index_t dim, double tau, const ddm::builtin_policy& policy,
                                                   const Integrator& integ) {
  const auto experts = base.experts().size();
  if (run.placement_spec != "balanced") return ddm::mpi::placement::parse(run.placement_spec, experts, run.size());
  const ddm::host_context ctx = base.context();
  const auto shard = ddm::mpi::shard_of(cfg.samples, run.comm);
  auto field = ddm::make_routed_field<T, ddm::host_space>(base.experts(), base.router(tau), policy, ctx);
  ddm::batch<T> noise(cfg.samples, dim);
  ddm::fill_normal(ctx, noise.view(), cfg.seed);
  ddm::batch<T> x(shard.rows, dim);
  ddm::copy(ctx, x.view(), noise.cview().subrows(shard.first, shard.rows));
  ddm::sample(ctx, ddm::sample_options{}, field, x.view(), ddm::schedules::uniform(std::max<long>(2, cfg.steps / 4)), integ);
  std::vector<double> load;
  for (std::size_t n : field.expert_rows()) load.push_back(static_cast<double>(sum_over_ranks(run, n)));
  const auto ranks = static_cast<std::size_t>(run.size());
  return ddm::mpi::placement::balanced(load, run.size(), (experts + ranks - 1) / ranks + 1);
}

}  // namespace paradox
