// The state algebra and one integrator step on a memory-bound field, beside a triad loop
// (a = b + s c) measured in the same binary (bench/support): the ratio of the two bandwidths shows
// how close the update is to the machine's memory limit.
//
//   triad                 the reference loop itself (its ratio is ~1 by construction)
//   lincomb<N>            out = sum of N operands: N reads and one write per element
//   euler_update          x = x + dt v in place, the update of an Euler step (2 reads, 1 write):
//                         the fused update the >= 85%-of-triad goal is about
//   step/<integrator>     one stepper step on v = -x; bytes count 2 passes per field evaluation
//                         (read x, write v) plus the passes of the update's lincombs
//
// Shapes (full): (B, D) = (64, 1024) (L2-resident), (1024, 1024) (4 MiB arrays), (1024, 16384)
// (64 MiB) and (1024, 65536) (256 MiB per array: DRAM on any machine we run on). Smoke: (16, 64).

#include <string>

#include "support/bench_support.hpp"

#include <ddm/ddm.hpp>

namespace ddm::bench {
namespace {

using value_t = float;

// A field as cheap as a field can be: v = -x. Its cost is pure memory traffic.
struct negated_field {
  void operator()(batch_view<const value_t> x, double /*t*/, batch_view<value_t> v) const {
    lincomb(host_context{}, v, {-1.0}, x);
  }
};

void triad(benchmark::State& state, index_t b, index_t d) {
  const index_t n = b * d;
  batch<value_t> a(1, n), x(1, n), y(1, n);
  fill(host_context{}, x.view(), 1.0F);
  fill(host_context{}, y.view(), 2.0F);
  const loop_timer timer;
  for (auto _ : state) {
    triad_kernel(a.data(), x.data(), y.data(), 0.5F, n);
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  report_bandwidth(state, 3.0 * static_cast<double>(n) * sizeof(value_t), timer.seconds(), n);
}

template <int N>
void fused_lincomb(benchmark::State& state, index_t b, index_t d) {
  batch<value_t> out(b, d), p(b, d), q(b, d), r(b, d), s(b, d);
  const host_context ctx{};
  fill(ctx, p.view(), 1.0F);
  fill(ctx, q.view(), 2.0F);
  fill(ctx, r.view(), 3.0F);
  fill(ctx, s.view(), 4.0F);
  const loop_timer timer;
  for (auto _ : state) {
    if constexpr (N == 2) lincomb(ctx, out.view(), {1.0, 0.5}, p, q);
    if constexpr (N == 3) lincomb(ctx, out.view(), {1.0, 0.5, 0.25}, p, q, r);
    if constexpr (N == 4) lincomb(ctx, out.view(), {1.0, 0.5, 0.25, 0.125}, p, q, r, s);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  report_bandwidth(state, (N + 1.0) * static_cast<double>(b * d) * sizeof(value_t), timer.seconds(), b * d);
}

void euler_update(benchmark::State& state, index_t b, index_t d) {
  batch<value_t> x(b, d), v(b, d);
  const host_context ctx{};
  fill_normal(ctx, x.view(), 1);
  fill_normal(ctx, v.view(), 2);
  double dt = 1e-3;
  const loop_timer timer;
  for (auto _ : state) {
    lincomb(ctx, x.view(), {1.0, dt}, x, v);
    dt = -dt;  // keeps x bounded over any number of iterations
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  report_bandwidth(state, 3.0 * static_cast<double>(b * d) * sizeof(value_t), timer.seconds(), b * d);
}

// passes: 2 per field evaluation plus the update's (see bench/support/routed_cases.hpp for the
// per-step derivations; here every step is a middle step, t in (0, 1)).
template <class Integrator>
void integrator_step(benchmark::State& state, index_t b, index_t d, double passes) {
  batch<value_t> x(b, d);
  fill_normal(host_context{}, x.view(), 1);
  auto st = Integrator{}.template make_stepper<value_t>(host_context{}, b, d);
  negated_field f;
  double t = 0.9;
  const loop_timer timer;
  for (auto _ : state) {
    st.step(f, x.view(), t, t - 1e-4);
    t -= 1e-4;
    if (t < 0.1) t = 0.9;
    benchmark::DoNotOptimize(x.data());
  }
  state.SetItemsProcessed(state.iterations() * b);
  report_bandwidth(state, passes * static_cast<double>(b * d) * sizeof(value_t), timer.seconds(), b * d);
}

template <class Fn>
void add(const std::string& name, index_t b, index_t d, Fn fn) {
  benchmark::RegisterBenchmark((name + "/B:" + std::to_string(b) + "/D:" + std::to_string(d)).c_str(),
                               [=](benchmark::State& s) { fn(s, b, d); })
      ->UseRealTime();
}

}  // namespace

void register_benchmarks(const options& opt) {
  std::vector<std::pair<index_t, index_t>> shapes{{16, 64}};
  if (opt.shapes == grid::full) shapes = {{64, 1024}, {1024, 1024}, {1024, 16384}, {1024, 65536}};
  for (auto [b, d] : shapes) {
    add("triad", b, d, triad);
    add("lincomb<2>", b, d, fused_lincomb<2>);
    add("lincomb<3>", b, d, fused_lincomb<3>);
    add("lincomb<4>", b, d, fused_lincomb<4>);
    add("euler_update", b, d, euler_update);
    // euler: field 2, update 3
    add("step/euler", b, d, [](benchmark::State& s, index_t bb, index_t dd) { integrator_step<euler>(s, bb, dd, 5); });
    // heun: two evaluations (4), predictor 3, corrector 4
    add("step/heun", b, d, [](benchmark::State& s, index_t bb, index_t dd) { integrator_step<heun>(s, bb, dd, 11); });
    // 2M: field 2, D 3, update 4
    add("step/dpm++2m", b, d, [](benchmark::State& s, index_t bb, index_t dd) { integrator_step<dpmpp_2m>(s, bb, dd, 9); });
    // 3M: field 2, D 3, update 5
    add("step/dpm++3m", b, d, [](benchmark::State& s, index_t bb, index_t dd) { integrator_step<dpmpp_3m>(s, bb, dd, 10); });
    // 2S: two evaluations (4), D 3, u 3, update 4
    add("step/dpm++2s", b, d, [](benchmark::State& s, index_t bb, index_t dd) { integrator_step<dpmpp_2s>(s, bb, dd, 14); });
  }
}

}  // namespace ddm::bench
