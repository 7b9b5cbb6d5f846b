#pragma once
// ddm-dit on the learned Fashion-MNIST DiT DDM (examples/03_fashion/models/fashion-dit): a folder
// whose config.json has format "ddm-fashion-dit/1", with original-DiT experts in pixel space
// (28 x 28, one channel, unconditional) and a DiT router, loaded by the fashion sub-library
// (fashion/dit_folder.hpp). Sampled on the host from Gaussian noise with --policy, --solver and
// --steps; --png writes the samples as an image grid, so that the DiT is seen generating real
// images. Built when the fashion sub-library is (ddm_fashion: zlib, Eigen, a BLAS; PNG: libpng).
//
// Under mpirun -np N with --placement (a build with ddm::mpi), the same run with the experts
// spread over the N ranks (ddm::mpi::distributed_experts): each rank draws the whole batch's noise,
// keeps its shard, routes its rows with its own router and reaches the experts where they live;
// the shards are gathered and the counts summed, and rank 0 prints what one process prints, then
// the placement and each rank's share of the work.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <ddm/ddm.hpp>
#include <ddm/registry/integrators.hpp>
#include <ddm/registry/policies.hpp>

#include "driver.hpp"
#include "fashion/dit_folder.hpp"
#if DDM_FASHION_PNG
#include "fashion/png.hpp"
#endif
#if DDM_DIT_MPI
#include <ddm/mpi.hpp>
#endif

namespace ddm_dit {

inline void print_fashion_header(const options& o, const fashion::dit_folder& folder, const std::string& policy,
                                 const char* where) {
  std::printf("fashion-dit DDM %s: %td DiT experts in pixel space (hidden %td, depth %td, %td heads, patch %td), "
              "a DiT router, policy %s, %ld samples, %ld %s steps, %s\n",
              o.checkpoint.c_str(), folder.num_experts, folder.expert_cfg.hidden_size, folder.expert_cfg.depth,
              folder.expert_cfg.num_heads, folder.expert_cfg.patch_size, policy.c_str(), o.batch, o.steps,
              o.solver.c_str(), where);
}

/// The run's counts (summed over ranks in a distributed run) and the samples, as one process prints them.
inline int print_fashion_result(const options& o, const ddm::sample_result& result, double seconds,
                                std::span<const std::size_t> rows, std::size_t rows_routed,
                                ddm::batch_view<const float> x) {
  std::size_t evaluations = 0;
  for (const std::size_t n : rows) evaluations += n;
  std::printf("%zu steps, %zu routed-field calls in %.2f s; expert evaluations per routed row: %.2f of %zu\n",
              result.steps, result.field_evaluations, seconds,
              static_cast<double>(evaluations) / static_cast<double>(rows_routed), rows.size());
  for (std::size_t k = 0; k < rows.size(); ++k)
    std::printf("  expert %zu: %6zu rows (%5.1f%% of routed rows)\n", k, rows[k],
                100.0 * static_cast<double>(rows[k]) / static_cast<double>(rows_routed));
  const ddm::index_t b = x.rows();
  if (!o.png.empty()) {
#if DDM_FASHION_PNG
    std::vector<float> images(static_cast<std::size_t>(b * fashion::image_values));
    fashion::to_pixels(x, ddm::batch_view<float>(images.data(), b, fashion::image_values));
    fashion::write_png_grid(o.png, ddm::batch_view<const float>(images.data(), b, fashion::image_values), 8);
    std::printf("%td samples written as a PNG grid to %s\n", b, o.png.c_str());
#else
    throw ddm::io_error("--png: this build has no libpng (Debian package libpng-dev); no grid written");
#endif
  }
  return finish(o, ddm::host_context{}, x);
}

inline int run_fashion_dit(const options& o) {
  const auto folder = fashion::load_dit_folder(o.checkpoint);
  const ddm::host_context ctx{};
  auto field = ddm::make_routed_field<float, ddm::host_space>(
      fashion::make_dit_experts(folder), fashion::dit_learned_router(folder, 1.0), ddm::policy_by_name(o.policy), ctx);
  print_fashion_header(o, *folder, field.policy().name(), "CPU");
  ddm::batch<float> x(o.batch, fashion::image_values);
  ddm::fill_normal(ctx, x.view(), o.seed);
  const auto schedule = ddm::schedules::uniform(o.steps);
  const auto start = std::chrono::steady_clock::now();
  const auto result = ddm::with_integrator(
      o.solver, [&](const auto& integ) { return ddm::sample(ctx, ddm::sample_options{}, field, x.view(), schedule, integ); },
      solvers{});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return print_fashion_result(o, result, seconds, field.expert_rows(), field.rows_routed(), x.cview());
}

#if DDM_DIT_MPI
/// run_fashion_dit with the experts over the ranks of MPI_COMM_WORLD (see the header).
inline int run_fashion_dit_distributed(const options& o) {
  namespace mpi = ddm::mpi;
  const auto comm = mpi::communicator::world();
  const bool root = comm.rank() == 0;
  const auto folder = fashion::load_dit_folder(o.checkpoint);
  const ddm::host_context ctx{};
  const auto k = static_cast<std::size_t>(folder->num_experts);
  const auto mine = mpi::shard_of(o.batch, comm);
  ddm::batch<float> noise(o.batch, fashion::image_values);
  ddm::fill_normal(ctx, noise.view(), o.seed);

  // One sampling run of this rank's shard with the experts placed by `where`, `steps` steps.
  struct outcome {
    ddm::sample_result result;
    double seconds;
    std::vector<std::size_t> rows;     // per expert, summed over ranks
    std::size_t rows_routed;           // summed over ranks
    mpi::exchange_stats stats;         // this rank's
    ddm::batch<float> x;               // this rank's shard
  };
  auto run = [&](const mpi::placement& where, long steps) {
    auto field = ddm::make_routed_field<float, ddm::host_space>(
        mpi::make_distributed_experts<float>(comm, where, fashion::make_dit_experts(folder), mine.first),
        fashion::dit_learned_router(folder, 1.0), ddm::policy_by_name(o.policy), ctx);
    outcome out{{}, 0, {}, 0, {}, ddm::batch<float>(mine.rows, fashion::image_values)};
    ddm::copy(ctx, out.x.view(), noise.cview().subrows(mine.first, mine.rows));
    const auto schedule = ddm::schedules::uniform(steps);
    const auto start = std::chrono::steady_clock::now();
    out.result = ddm::with_integrator(
        o.solver,
        [&](const auto& integ) { return ddm::sample(ctx, ddm::sample_options{}, field, out.x.view(), schedule, integ); },
        solvers{});
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    out.rows.assign(field.expert_rows().begin(), field.expert_rows().end());
    mpi::sum_over_ranks(comm, std::span<std::size_t>(out.rows));
    out.rows_routed = field.rows_routed();
    mpi::sum_over_ranks(comm, std::span<std::size_t>(&out.rows_routed, 1));
    out.stats = field.experts().stats();
    return out;
  };

  mpi::placement where = mpi::placement::round_robin(k, comm.size());
  if (o.placement == "balanced") {
    // The load of each expert over a short profiling run of the same noise, policy and solver.
    const auto profile = run(where, std::min(o.steps, 4L));
    std::vector<double> load(profile.rows.begin(), profile.rows.end());
    const std::size_t ranks = static_cast<std::size_t>(comm.size());
    where = mpi::placement::balanced(load, comm.size(), (k + ranks - 1) / ranks + 1);
  } else if (o.placement != "round-robin") {
    where = mpi::placement::parse(o.placement, k, comm.size());
  }
  if (root) print_fashion_header(o, *folder, ddm::policy_by_name(o.policy).name(),
                                 ddm::concat("CPU, ", comm.size(), " MPI ranks").c_str());
  auto out = run(where, o.steps);
  ddm::batch<float> x(o.batch, fashion::image_values);
  mpi::allgather_rows(comm, out.x.cview(), x.view());
  // Each rank's share: rows its experts evaluated, and its time in its experts and in the exchange.
  std::vector<double> shares(3 * static_cast<std::size_t>(comm.size()), 0.0);
  const auto me = 3 * static_cast<std::size_t>(comm.rank());
  shares[me] = static_cast<double>(out.stats.rows_evaluated);
  shares[me + 1] = out.stats.compute_seconds;
  shares[me + 2] = out.stats.exchange_seconds;
  mpi::sum_over_ranks(comm, std::span<double>(shares));
  if (!root) return 0;
  const int status = print_fashion_result(o, out.result, out.seconds, out.rows, out.rows_routed, x.cview());
  std::printf("placement %s (%s)\n", where.describe().c_str(), o.placement.c_str());
  for (int r = 0; r < comm.size(); ++r) {
    const auto at = 3 * static_cast<std::size_t>(r);
    std::printf("  rank %d: experts evaluated %6.0f rows; %.2f s in its experts, %.2f s in the exchange\n", r,
                shares[at], shares[at + 1], shares[at + 2]);
  }
  return status;
}
#endif

}  // namespace ddm_dit
