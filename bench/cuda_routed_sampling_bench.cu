// Solver x routing policy x K x B x D on the device: whole routed sampling runs over uniform(8)
// from t = 1 to 0, the device counterpart of bench/routing_bench.cpp (same fields, solvers,
// policies, traffic model, benchmark names and counters; bench/report.py renders both).
//
// Fields (bench/support/routed_cases.hpp describes the host versions):
//   analytic  ddm::cuda::device_analytic_ddm of analytic_model(K, D) with its posterior router
//             (tau = 1): one thread per row, O(J D) per row for the router, O(4 D) per selected
//             expert and row
//   linear    expert k: v = a_k x (one device lincomb, a_k = -(1 + k / K)); the router scores the
//             row mean (one block per row, a double reduction) with the host's logits
// Policies are the concrete types (top_k, full_ensemble, top_p, scheduled), so that softmax and
// the policy run in the routed field's one decision kernel: one wait for the device per call.
//
// Each iteration copies the same noise into the state, samples it with a ddm::sampler (its stepper
// is kept between runs, as a GPU user would, so a run allocates nothing), and waits for the stream
// before the iteration ends: Google Benchmark's real time and the loop's own wall clock are both
// read after the device has finished. Reported, as on the host:
//   items_per_second        samples per second
//   s_per_step              seconds per schedule step (run time / 8)
//   expert_evals_per_sample expert row evaluations per sample and run
//   field_evals             routed-field calls per run (checked against the integrator's count)
//   bytes_per_second        the host suite's traffic model (routed_cases.hpp) over the time
//   d2d_ratio, d2d_GBps     that over a cudaMemcpyAsync device-to-device of B * D floats measured
//                           in this process (cuda_bench_support.hpp), and that copy's bandwidth
//
// The grid (full):
//   every solver x policy x K in {2, 8, 16} at one shape per field: analytic (B, D) = (4096,
//   1024) (one thread per row: the rows are the parallelism), linear (4096, 16384) (256 MiB per
//   state, well beyond the L2; the shape of the other device benchmarks);
//   Euler and 2M x top-1, top-2, full x K = 8 over B in {64, 1024, 4096, 16384} x D in {64, 1024,
//   16384} for the analytic DDM up to B * D = 2^26, and over B in {64, 1024, 4096} x D in {1024,
//   16384, 65536} for the linear field (up to 1 GiB per state; the full ensemble's stacked expert
//   outputs are K times that).
// The smoke grid: every solver x policy at K = 2 and 8, (B, D) = (16, 64).
// Without a GPU every benchmark reports "no GPU: <reason>" and the binary exits with status 0.

#include <benchmark/benchmark.h>

#include <cuda_runtime_api.h>

#include <cub/block/block_reduce.cuh>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <ddm/cuda.hpp>

#include "cuda_bench_support.hpp"
#include "support/bench_support.hpp"
#include "support/routed_cases.hpp"
#include "support/routed_counters.hpp"

namespace ddm::bench {
namespace {

constexpr std::size_t steps = 8;

// ---------------------------------------------------------------------------------------------
// The linear routed field on the device

struct device_scaled_expert {
  double a = -1.0;
  cuda_context ctx;
  void operator()(batch_view<const value_t, cuda_space> x, double /*t*/, batch_view<value_t, cuda_space> v) const {
    lincomb(ctx, v, {a}, x);
  }
};

constexpr int router_block = 256;

// logits(r, k) = -2 (s - c_k)^2 with s = sum(x_r) / sqrt(D) and c_k as on the host
// (row_mean_router_fn): one block per row, the row sum in double.
__global__ void __launch_bounds__(router_block)
    row_mean_logits_kernel(const value_t* x, index_t sx, index_t rows, index_t cols, value_t* logits, index_t sl,
                           int experts, double scale) {
  using block_reduce = cub::BlockReduce<double, router_block>;
  __shared__ typename block_reduce::TempStorage scratch;
  for (index_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const value_t* p = x + r * sx;
    double s = 0;
    for (index_t j = threadIdx.x; j < cols; j += router_block) s += static_cast<double>(p[j]);
    s = block_reduce(scratch).Sum(s);
    if (threadIdx.x == 0) {
      s *= scale;
      for (int k = 0; k < experts; ++k) {
        const double c = experts > 1 ? -2.0 + 4.0 * k / (experts - 1) : 0.0;
        logits[r * sl + k] = static_cast<value_t>(-2.0 * (s - c) * (s - c));
      }
    }
    __syncthreads();  // the reduction's scratch is reused by the next row
  }
}

struct device_row_mean_router_fn {
  int experts = 2;
  cuda_context ctx;
  void operator()(batch_view<const value_t, cuda_space> x, double /*t*/, batch_view<value_t, cuda_space> logits) const {
    if (x.rows() == 0) return;
    const auto grid = static_cast<unsigned>(std::min<index_t>(x.rows(), 65535));
    row_mean_logits_kernel<<<grid, router_block, 0, ctx.stream()>>>(
        x.data(), x.stride(), x.rows(), x.cols(), logits.data(), logits.stride(), experts,
        1.0 / std::sqrt(static_cast<double>(x.cols())));
    cuda::check_launch("ddm_bench_cuda_routed (row_mean_logits_kernel)");
  }
};

expert_vector<device_scaled_expert> device_linear_experts(const cuda_context& ctx, int k) {
  expert_vector<device_scaled_expert> e;
  for (int i = 0; i < k; ++i) e.push_back(device_scaled_expert{-(1.0 + static_cast<double>(i) / k), ctx});
  return e;
}

auto device_linear_router(const cuda_context& ctx, int k) {
  return router_fn(static_cast<std::size_t>(k), "row-mean router", device_row_mean_router_fn{k, ctx});
}

// ---------------------------------------------------------------------------------------------

template <class Field, class Integrator>
void run_case(benchmark::State& state, const cuda_context& ctx, Field& field, const Integrator& integ,
              const routed_case& c) {
  batch<value_t, cuda_space> noise(ctx, c.b, c.d);
  batch<value_t, cuda_space> x(ctx, c.b, c.d);
  fill_normal(ctx, noise.view(), 2026);  // the host suite's noise (Philox: the same numbers)
  const time_schedule schedule = schedules::uniform(static_cast<long>(steps));
  sampler<Integrator, value_t, cuda_space> run(integ, c.b, c.d, ctx);
  // One untimed run: the routed field's workspace, the memory pool, first launches.
  copy(ctx, x.view(), noise);
  (void)run(field, x.view(), schedule);
  ctx.synchronize();
  field.reset_counts();
  double passes = 0;
  const loop_timer timer;
  for (auto _ : state) {
    copy(ctx, x.view(), noise);
    const sample_result r = run(field, x.view(), schedule);
    ctx.synchronize();  // the iteration ends when the device has finished it
    passes += 2.0 + 2.0 * static_cast<double>(r.field_evaluations) + update_passes(integ, steps, r);
  }
  const double seconds = timer.seconds();
  if (!report_routed_counters(state, field, integ, schedule, steps, c)) return;
  const double pass_bytes = static_cast<double>(c.b * c.d) * sizeof(value_t);
  const double achieved = passes * pass_bytes / seconds;
  const double d2d = reference_bandwidth(ctx, c.b * c.d);
  state.counters["bytes_per_second"] =
      benchmark::Counter(achieved, benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
  state.counters["d2d_ratio"] = achieved / d2d;
  state.counters["d2d_GBps"] = d2d * 1e-9;
}

void run(benchmark::State& state, routed_case c) {
  if (skipped_without_gpu(state)) return;
  const cuda_context ctx;
  with_solver(c.solver, [&](const auto& integ) {
    // A ddm::builtin_policy decides in the routed field's fused kernel, like the policy it holds.
    const builtin_policy policy = make_policy(c.policy);
    if (c.field == field_id::analytic) {
      const cuda::device_analytic_ddm model(ctx, analytic_model(c.k, c.d));
      auto field = cuda::make_analytic_routed_field<value_t>(model, 1.0, policy);
      run_case(state, ctx, field, integ, c);
    } else {
      auto field = make_routed_field<value_t, cuda_space>(device_linear_experts(ctx, c.k),
                                                          device_linear_router(ctx, c.k), policy, ctx);
      run_case(state, ctx, field, integ, c);
    }
  });
}

void add(const routed_case& c) {
  benchmark::RegisterBenchmark(routed_case_name(c).c_str(), run, c)->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

void register_benchmarks(const options& opt) {
  for (field_id f : {field_id::analytic, field_id::linear}) {
    if (opt.shapes == grid::smoke) {
      for (const auto& s : all_solvers())
        for (const char* p : all_policies)
          for (int k : {2, 8}) add({f, s, p, k, 16, 64});
      continue;
    }
    const bool analytic = f == field_id::analytic;
    const index_t cross_b = 4096;
    const index_t cross_d = analytic ? 1024 : 16384;
    for (const auto& s : all_solvers())
      for (const char* p : all_policies)
        for (int k : {2, 8, 16}) add({f, s, p, k, cross_b, cross_d});
    const std::vector<index_t> rows = analytic ? std::vector<index_t>{64, 1024, 4096, 16384}
                                               : std::vector<index_t>{64, 1024, 4096};
    const std::vector<index_t> cols = analytic ? std::vector<index_t>{64, 1024, 16384}
                                               : std::vector<index_t>{1024, 16384, 65536};
    const index_t cap = analytic ? (index_t{1} << 26) : (index_t{1} << 28);
    for (const char* s : {euler::name(), dpmpp_2m::name()})
      for (const char* p : {"top1", "top2", "full"})
        for (index_t b : rows)
          for (index_t d : cols) {
            if (b * d > cap || (b == cross_b && d == cross_d)) continue;  // the cross above has it
            add({f, s, p, 8, b, d});
          }
  }
}

}  // namespace ddm::bench
