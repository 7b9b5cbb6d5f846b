// Integrator step throughput on a memory-bound field, beside a triad loop (a = b + s c) measured
// in the same binary: the ratio of the two bandwidths shows how close a step is to the machine's
// memory limit.
//
// Bytes per step count the compulsory traffic of the update alone: the field here is
// v = -x (one read of x, one write of v), and each integrator's update reads its operands and
// writes x once.

#include <benchmark/benchmark.h>

#include <ddm/ddm.hpp>

namespace {

// A field as cheap as a field can be: v = -x. Its cost is pure memory traffic.
struct linear_field {
  template <class T>
  void operator()(ddm::batch_view<const T> x, double /*t*/, ddm::batch_view<T> v) const {
    ddm::lincomb(ddm::host_context{}, v, {-1.0}, x);
  }
};

void triad(benchmark::State& state) {
  const auto n = state.range(0) * state.range(1);
  ddm::batch<float> a(1, n), b(1, n), c(1, n);
  ddm::fill(ddm::host_context{}, b.view(), 1.0F);
  ddm::fill(ddm::host_context{}, c.view(), 2.0F);
  for (auto _ : state) {
    float* pa = a.data();
    const float* pb = b.data();
    const float* pc = c.data();
    for (ddm::index_t i = 0; i < n; ++i) pa[i] = pb[i] + 0.5F * pc[i];
    benchmark::DoNotOptimize(pa);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * 3 * n * static_cast<std::int64_t>(sizeof(float)));
}

// One lincomb with N operands: N reads and one write per element.
template <int N>
void fused_lincomb(benchmark::State& state) {
  const auto rows = state.range(0);
  const auto cols = state.range(1);
  ddm::batch<float> out(rows, cols), a(rows, cols), b(rows, cols), c(rows, cols), d(rows, cols);
  const ddm::host_context ctx{};
  for (auto _ : state) {
    if constexpr (N == 2) ddm::lincomb(ctx, out.view(), {1.0, 0.5}, a, b);
    if constexpr (N == 4) ddm::lincomb(ctx, out.view(), {1.0, 0.5, 0.25, 0.125}, a, b, c, d);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * (N + 1) * rows * cols * static_cast<std::int64_t>(sizeof(float)));
}

// Bytes of one step: per field evaluation 2 passes (read x, write v); plus the update's passes.
template <class Integrator>
void integrator_step(benchmark::State& state, Integrator integ, int field_passes, int update_passes) {
  const auto rows = state.range(0);
  const auto cols = state.range(1);
  ddm::batch<float> x(rows, cols);
  ddm::fill_normal(ddm::host_context{}, x.view(), 1);
  auto st = integ.template make_stepper<float>(ddm::host_context{}, rows, cols);
  linear_field f;
  double t = 0.9;
  for (auto _ : state) {
    st.step(f, x.view(), t, t - 1e-4);
    t -= 1e-4;
    if (t < 0.1) t = 0.9;
    benchmark::DoNotOptimize(x.data());
  }
  state.SetBytesProcessed(state.iterations() * (field_passes + update_passes) * rows * cols *
                          static_cast<std::int64_t>(sizeof(float)));
  state.SetItemsProcessed(state.iterations() * rows);
}

void shapes(benchmark::internal::Benchmark* b) {
  for (auto [rows, cols] : {std::pair{64, 1024}, std::pair{1024, 1024}, std::pair{1024, 16384}}) b->Args({rows, cols});
  b->ArgNames({"B", "D"});
}

}  // namespace

BENCHMARK(triad)->Apply(shapes);
BENCHMARK(fused_lincomb<2>)->Apply(shapes);
BENCHMARK(fused_lincomb<4>)->Apply(shapes);
// euler: field 2 passes, update reads x, v and writes x: 3
BENCHMARK_CAPTURE(integrator_step, euler, ddm::euler{}, 2, 3)->Apply(shapes);
// heun: 2 evaluations (4), predictor 3, corrector reads x, v0, v1, writes x: 4
BENCHMARK_CAPTURE(integrator_step, heun, ddm::heun{}, 4, 7)->Apply(shapes);
// 2m: field 2, D = x - t v: 3, update reads x, D_i, D_{i-1}, writes x: 4
BENCHMARK_CAPTURE(integrator_step, dpmpp_2m, ddm::dpmpp_2m{}, 2, 7)->Apply(shapes);
// 3m: field 2, D: 3, update reads x and 3 D's, writes x: 5
BENCHMARK_CAPTURE(integrator_step, dpmpp_3m, ddm::dpmpp_3m{}, 2, 8)->Apply(shapes);
// 2s: 2 evaluations (4), D: 3, u: 3, update reads x, u, vm, writes x: 4
BENCHMARK_CAPTURE(integrator_step, dpmpp_2s, ddm::dpmpp_2s{}, 4, 10)->Apply(shapes);
