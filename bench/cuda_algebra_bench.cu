// Device algebra throughput beside a device-to-device cudaMemcpyAsync measured in the same binary
// (timing and vs_memcpy: see cuda_bench_support.hpp). Traffic counts each operand read once and
// the output written once.
//
// Without a GPU every benchmark reports "no GPU: <reason>" and the binary exits with status 0.

#include <benchmark/benchmark.h>

#include <cuda_runtime_api.h>

#include <cstdint>

#include <ddm/cuda.hpp>

#include "cuda_bench_support.hpp"

namespace {

using ddm::batch;
using ddm::cuda_space;
using ddm::index_t;
using ddm::bench::reps;
using ddm::bench::run_timed;
using ddm::bench::skipped_without_gpu;

void memcpy_d2d(benchmark::State& state) {
  if (skipped_without_gpu(state)) return;
  const ddm::cuda_context ctx;
  const index_t n = state.range(0);
  batch<float, cuda_space> a(ctx, 1, n);
  batch<float, cuda_space> b(ctx, 1, n);
  const auto bytes = static_cast<std::size_t>(n) * sizeof(float);
  run_timed(state, ctx, n, 2.0 * static_cast<double>(bytes), [&] {
    DDM_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, ctx.stream()));
  });
}

// One fused lincomb over N operands: N reads and one write per element.
template <int N>
void fused_lincomb(benchmark::State& state) {
  if (skipped_without_gpu(state)) return;
  const ddm::cuda_context ctx;
  const index_t n = state.range(0);
  batch<float, cuda_space> out(ctx, 1, n), a(ctx, 1, n), b(ctx, 1, n), c(ctx, 1, n), d(ctx, 1, n);
  ddm::fill_normal(ctx, a.view(), 1);
  ddm::fill_normal(ctx, b.view(), 2);
  const double bytes = (N + 1) * static_cast<double>(n) * sizeof(float);
  run_timed(state, ctx, n, bytes, [&] {
    if constexpr (N == 2) ddm::lincomb(ctx, out.view(), {1.0, 0.5}, a, b);
    if constexpr (N == 4) ddm::lincomb(ctx, out.view(), {1.0, 0.5, 0.25, 0.125}, a, b, c, d);
  });
}

// lincomb on strided (B, D) views: rows one after another with a gap of `pad` values. pad = 4
// keeps every row 16-byte aligned (vector path, one row per block row); pad = 1 does not (one
// value at a time). Compare with the contiguous case of the same size.
void strided_lincomb(benchmark::State& state) {
  if (skipped_without_gpu(state)) return;
  const ddm::cuda_context ctx;
  const index_t rows = state.range(0);
  const index_t cols = state.range(1);
  const index_t pad = state.range(2);
  batch<float, cuda_space> out(ctx, rows, cols + pad), a(ctx, rows, cols + pad), b(ctx, rows, cols + pad);
  const ddm::batch_view<float, cuda_space> vo(out.data(), rows, cols, cols + pad);
  const ddm::batch_view<const float, cuda_space> va(a.data(), rows, cols, cols + pad);
  const ddm::batch_view<const float, cuda_space> vb(b.data(), rows, cols, cols + pad);
  const double bytes = 3.0 * static_cast<double>(rows * cols) * sizeof(float);
  run_timed(state, ctx, rows * cols, bytes, [&] { ddm::lincomb(ctx, vo, {1.0, 0.5}, va, vb); });
}

// A field as cheap as a field can be: v = -x (one read, one write). Its cost is memory traffic.
struct negation_field {
  ddm::cuda_context ctx;
  void operator()(ddm::batch_view<const float, cuda_space> x, double /*t*/,
                  ddm::batch_view<float, cuda_space> v) const {
    ddm::lincomb(ctx, v, {-1.0}, x);
  }
};

// One integrator step, field included. Passes: the field's 2, plus the update's.
template <class Integrator>
void integrator_step(benchmark::State& state, Integrator integ, int update_passes) {
  if (skipped_without_gpu(state)) return;
  const ddm::cuda_context ctx;
  const index_t rows = state.range(0);
  const index_t cols = state.range(1);
  batch<float, cuda_space> x(ctx, rows, cols);
  ddm::fill_normal(ctx, x.view(), 3);
  auto stepper = integ.template make_stepper<float>(ctx, rows, cols);
  negation_field field{ctx};
  double t = 0.9;
  const double bytes = (2 + update_passes) * static_cast<double>(rows * cols) * sizeof(float);
  run_timed(state, ctx, rows * cols, bytes, [&] {
    stepper.step(field, x.view(), t, t - 1e-4);
    t -= 1e-4;
    if (t < 0.1) {
      t = 0.9;
      if constexpr (requires { stepper.reset(); }) stepper.reset();
    }
  });
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * reps * rows);
}

void sizes(benchmark::internal::Benchmark* b) {
  // 16 MiB per operand (partly resident in a 50 MB L2) and 256 MiB (DRAM).
  for (index_t n : {index_t{1} << 22, index_t{1} << 26}) b->Arg(n);
  b->ArgNames({"n"})->UseManualTime();
}

void shapes(benchmark::internal::Benchmark* b) {
  for (index_t rows : {256, 4096}) b->Args({rows, 16384});
  b->ArgNames({"B", "D"})->UseManualTime();
}

}  // namespace

BENCHMARK(memcpy_d2d)->Apply(sizes);
BENCHMARK(fused_lincomb<2>)->Apply(sizes);
BENCHMARK(fused_lincomb<4>)->Apply(sizes);
BENCHMARK(strided_lincomb)->Args({4096, 16384, 4})->Args({4096, 16384, 1})->ArgNames({"B", "D", "pad"})->UseManualTime();
// euler: update reads x, v and writes x: 3
BENCHMARK_CAPTURE(integrator_step, euler, ddm::euler{}, 3)->Apply(shapes);
// 2m: D = x - t v: 3, update reads x, D_i, D_{i-1}, writes x: 4
BENCHMARK_CAPTURE(integrator_step, dpmpp_2m, ddm::dpmpp_2m{}, 7)->Apply(shapes);
