// Routing on the device: the data movement of a routed call in bytes per second beside a
// device-to-device copy measured in the same binary, and the routed field's cost per call on the
// analytic DDM (K = 8 experts) for top-1, top-2 and the full ensemble.
//
// 1. Routed combine (manual GPU time, CUDA events; vs_memcpy as in cuda_bench_support.hpp), B rows
//    of D floats, K = 8 experts, k selected per row (the first k of a Philox permutation):
//    - routed_gather_combine: what the device routed field moves: each expert's rows of x gathered
//      into a sub-batch (read + write n_e D values), then one combine kernel reading every expert
//      output row once and writing v once: (2 k + k + 1) B D floats.
//    - gather_scatter_add: the host algorithm on device views (ddm::gather_rows and
//      ddm::scatter_add_weighted per expert after a fill of v): B D + (2 + 3) k B D floats.
//    The experts themselves are not called: their outputs are whatever the sub-batches hold.
// 2. analytic_routed_field: one routed call of the analytic DDM (D = 8, 4 Gaussians per expert)
//    on B rows, wall time per call including its one wait for the device (real time), with the
//    expert rows evaluated per call (expert_rows) and relative_cost; mixture_field is the perfect
//    monolith on the same rows, for scale.
//
// Without a GPU every benchmark reports "no GPU: <reason>" and the binary exits with status 0.

#include <benchmark/benchmark.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include <ddm/cuda.hpp>

#include "cuda_bench_support.hpp"

namespace {

using ddm::batch;
using ddm::batch_view;
using ddm::cuda_space;
using ddm::index_t;
using ddm::bench::reps;
using ddm::bench::run_timed;
using ddm::bench::skipped_without_gpu;

constexpr int K = 8;

// A routed call's grouping, made on the host: row r selects the first k experts of a Philox
// permutation, with random weights.
struct grouping {
  batch<std::int32_t, cuda_space> row_index;  // (sum n_e, 1)
  batch<std::int32_t, cuda_space> slot;       // (B, K)
  batch<float, cuda_space> weights;           // (B, K)
  std::vector<index_t> offsets;               // (K + 1)
};

grouping make_grouping(const ddm::cuda_context& ctx, index_t rows, int k) {
  batch<std::uint8_t> sel(rows, K);
  batch<float> w(rows, K);
  for (index_t r = 0; r < rows; ++r) {
    std::vector<int> order(K);
    std::iota(order.begin(), order.end(), 0);
    for (int i = K - 1; i > 0; --i) {  // Fisher-Yates with Philox uniforms
      const double u = ddm::philox4x32::uniform(7, 0, static_cast<std::uint64_t>(r * K + i));
      std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(u * (i + 1))]);
    }
    for (int i = 0; i < k; ++i) {
      sel(r, order[static_cast<std::size_t>(i)]) = 1;
      w(r, order[static_cast<std::size_t>(i)]) = 1.0F / static_cast<float>(k);
    }
  }
  batch<std::int32_t> ri(rows * K, 1);
  std::vector<index_t> offsets(K + 1);
  ddm::group_rows_by_expert(ddm::host_context{}, sel.cview(), ri.view(), std::span<index_t>(offsets));
  batch<std::int32_t> slot(rows, K);
  for (index_t r = 0; r < rows; ++r)
    for (int e = 0; e < K; ++e) slot(r, e) = -1;
  for (int e = 0; e < K; ++e)
    for (index_t i = offsets[static_cast<std::size_t>(e)]; i < offsets[static_cast<std::size_t>(e) + 1]; ++i)
      slot(ri(i, 0), e) = static_cast<std::int32_t>(i);
  return {ddm::cuda::to_device(ctx, ri.cview().subrows(0, offsets[K])), ddm::cuda::to_device(ctx, slot),
          ddm::cuda::to_device(ctx, w), offsets};
}

void routed_gather_combine(benchmark::State& state) {
  if (skipped_without_gpu(state)) return;
  const ddm::cuda_context ctx;
  const index_t rows = state.range(0);
  const index_t cols = state.range(1);
  const int k = static_cast<int>(state.range(2));
  const grouping g = make_grouping(ctx, rows, k);
  batch<float, cuda_space> x(ctx, rows, cols), v(ctx, rows, cols), x_sub(ctx, rows, cols);
  batch<float, cuda_space> stack(ctx, g.offsets[K], cols);
  ddm::fill_normal(ctx, x.view(), 1);
  ddm::fill_normal(ctx, stack.view(), 2);
  const double floats = static_cast<double>((3 * k + 1) * rows * cols);
  run_timed(state, ctx, rows * cols, floats * sizeof(float), [&] {
    for (int e = 0; e < K; ++e) {
      const index_t first = g.offsets[static_cast<std::size_t>(e)];
      const index_t n = g.offsets[static_cast<std::size_t>(e) + 1] - first;
      if (n == 0) continue;
      ddm::expert_grouping<cuda_space>::gather(ctx, x.cview(), g.row_index.cview().subrows(first, n),
                                               x_sub.view().subrows(0, n));
    }
    ddm::cuda::combine_routed(ctx, v.view(), g.weights.cview(), g.slot.cview(), stack.cview());
  });
  state.counters["k"] = k;
}

void gather_scatter_add(benchmark::State& state) {
  if (skipped_without_gpu(state)) return;
  const ddm::cuda_context ctx;
  const index_t rows = state.range(0);
  const index_t cols = state.range(1);
  const int k = static_cast<int>(state.range(2));
  const grouping g = make_grouping(ctx, rows, k);
  batch<float, cuda_space> x(ctx, rows, cols), v(ctx, rows, cols), x_sub(ctx, rows, cols);
  ddm::fill_normal(ctx, x.view(), 1);
  const double floats = static_cast<double>((5 * k + 1) * rows * cols);
  run_timed(state, ctx, rows * cols, floats * sizeof(float), [&] {
    ddm::fill(ctx, v.view(), 0.0F);
    for (int e = 0; e < K; ++e) {
      const index_t first = g.offsets[static_cast<std::size_t>(e)];
      const index_t n = g.offsets[static_cast<std::size_t>(e) + 1] - first;
      if (n == 0) continue;
      const auto rows_e = g.row_index.cview().subrows(first, n);
      ddm::expert_grouping<cuda_space>::gather(ctx, x.cview(), rows_e, x_sub.view().subrows(0, n));
      ddm::expert_grouping<cuda_space>::scatter_add(ctx, v.view(), g.weights.cview(), e, rows_e,
                                                    x_sub.cview().subrows(0, n));
    }
  });
  state.counters["k"] = k;
}

void combine_shapes(benchmark::internal::Benchmark* b) {
  for (int k : {1, 2, 8}) b->Args({4096, 16384, k});
  b->ArgNames({"B", "D", "k"})->UseManualTime();
}

// One routed call of the analytic DDM, waited for (wall time: the call waits for the device once
// itself; the final wait adds the combine kernel).
template <class Policy>
void analytic_routed_field(benchmark::State& state, Policy policy) {
  if (skipped_without_gpu(state)) return;
  const ddm::cuda_context ctx;
  const index_t rows = state.range(0);
  const ddm::synthetic::analytic_ddm model;
  const ddm::cuda::device_analytic_ddm dev(ctx, model);
  auto field = ddm::cuda::make_analytic_routed_field<float>(dev, 2.0, policy);
  batch<float, cuda_space> x(ctx, rows, model.dim()), v(ctx, rows, model.dim());
  ddm::fill_normal(ctx, x.view(), 3);
  field(x.cview(), 0.5, v.view());  // warm-up: workspace
  ctx.synchronize();
  field.reset_counts();
  for (auto _ : state) {
    field(x.cview(), 0.5, v.view());
    ctx.synchronize();
  }
  state.counters["expert_rows"] =
      static_cast<double>(field.expert_evaluations()) / static_cast<double>(std::max<std::size_t>(field.calls(), 1));
  state.counters["relative_cost"] = field.relative_cost();
  state.SetItemsProcessed(static_cast<std::int64_t>(field.expert_evaluations()));
}

void analytic_mixture_field(benchmark::State& state) {
  if (skipped_without_gpu(state)) return;
  const ddm::cuda_context ctx;
  const index_t rows = state.range(0);
  const ddm::synthetic::analytic_ddm model;
  const ddm::cuda::device_analytic_ddm dev(ctx, model);
  auto field = dev.mixture_field();
  batch<float, cuda_space> x(ctx, rows, model.dim()), v(ctx, rows, model.dim());
  ddm::fill_normal(ctx, x.view(), 3);
  field(x.cview(), 0.5, v.view());
  ctx.synchronize();
  for (auto _ : state) {
    field(x.cview(), 0.5, v.view());
    ctx.synchronize();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * rows);
}

void analytic_rows(benchmark::internal::Benchmark* b) {
  for (index_t rows : {4096, 262144}) b->Arg(rows);
  b->ArgNames({"B"})->UseRealTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(routed_gather_combine)->Apply(combine_shapes);
BENCHMARK(gather_scatter_add)->Apply(combine_shapes);
BENCHMARK_CAPTURE(analytic_routed_field, top_1, ddm::top_1())->Apply(analytic_rows);
BENCHMARK_CAPTURE(analytic_routed_field, top_2, ddm::top_2())->Apply(analytic_rows);
BENCHMARK_CAPTURE(analytic_routed_field, full_ensemble, ddm::full_ensemble{})->Apply(analytic_rows);
BENCHMARK(analytic_mixture_field)->Apply(analytic_rows);
