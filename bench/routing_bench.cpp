// Solver x routing policy x K x B x D: whole ddm::sample() runs of a routed field over
// uniform(8) from t = 1 to 0, for the analytic DDM (compute-bound) and the linear routed field
// (memory-bound); see bench/support/routed_cases.hpp for both fields and the traffic model.
//
// Each iteration copies the same noise into the state and samples it. Reported:
//   items_per_second        samples per second
//   s_per_step              seconds per schedule step (run time / 8)
//   expert_evals_per_sample expert row evaluations per sample and run (top-2 over 8 Euler steps: 16)
//   field_evals             routed-field calls per run (checked against the integrator's count)
//   bytes_per_second, triad_ratio   modeled traffic over time, and over the triad at B * D floats
//
// The grid (full): every solver x policy x K in {2, 8, 16} at (B, D) = (64, 1024); and Euler and
// 2M x top-1, top-2, full x K = 8 over B in {1, 64, 1024} x D in {64, 1024, 16384, 65536}, the
// analytic DDM up to B * D = 2^22 (its router alone is O(32 D) per row: 1024 x 16384 would take
// tens of seconds per run), the linear field up to 1024 x 65536. The smoke grid: every solver x
// policy at K = 2 and 8, (B, D) = (16, 64).
//
// Threads and arithmetic: every benchmark above runs at one host thread with the analytic DDM's
// exact arithmetic (double inside the experts and router). The configurations the PyTorch peer
// times (analytic, Euler and 2M x top-1, top-2, full, K = 8, every (B, D) above) also run
//   .../threads:2       at host_context{.threads = 2} (field, experts, router, sampler algebra)
//   .../f32             with synthetic::arithmetic::value_type (float where the work is O(B J D),
//                       like PyTorch's float32), one thread
//   .../threads:2/f32   both
// so that bench/report.py can compare ddm and PyTorch at equal threads and in the same precision.
// A build without OpenMP (ddm::openmp) reports the threads:2 benchmarks as errors rather than
// timing one thread under their name. The smoke grid has the same variants at (16, 64).

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "support/bench_support.hpp"
#include "support/routed_cases.hpp"
#include "support/routed_counters.hpp"

namespace ddm::bench {
namespace {

constexpr std::size_t steps = 8;

// The noise of the last shape, kept across benchmarks (Google Benchmark calls a benchmark several
// times while it sizes the iteration count; at 1024 x 65536 a fill takes a second).
const batch<value_t>& noise_for(index_t b, index_t d) {
  static batch<value_t> noise;
  if (noise.rows() != b || noise.cols() != d) {
    noise = batch<value_t>();
    noise = batch<value_t>(b, d);
    fill_normal(host_context{}, noise.view(), 2026);
  }
  return noise;
}

// A routed case with the host threads and the analytic DDM's arithmetic it runs with.
struct timed_case {
  routed_case c;
  int threads = 1;
  synthetic::arithmetic arith = synthetic::arithmetic::exact;
};

// The 1-thread exact names are routed_case_name's alone, as before these variants existed, so that
// older JSON still reads.
[[nodiscard]] std::string timed_case_name(const timed_case& t) {
  std::string name = routed_case_name(t.c);
  if (t.threads != 1) name += "/threads:" + std::to_string(t.threads);
  if (t.arith == synthetic::arithmetic::value_type) name += "/f32";
  return name;
}

template <class Field, class Integrator>
void run_case(benchmark::State& state, const host_context& ctx, Field& field, const Integrator& integ,
              const routed_case& c) {
  const batch<value_t>& noise = noise_for(c.b, c.d);
  batch<value_t> x(c.b, c.d);
  const time_schedule schedule = schedules::uniform(static_cast<long>(steps));
  // One untimed run sizes the routed field's workspace.
  copy(ctx, x.view(), noise);
  (void)sample(ctx, sample_options{}, field, x.view(), schedule, integ);
  field.reset_counts();
  double passes = 0;
  const loop_timer timer;
  for (auto _ : state) {
    copy(ctx, x.view(), noise);
    const sample_result r = sample(ctx, sample_options{}, field, x.view(), schedule, integ);
    passes += 2.0 + 2.0 * static_cast<double>(r.field_evaluations) + update_passes(integ, steps, r);
    benchmark::DoNotOptimize(x.data());
  }
  const double seconds = timer.seconds();
  const auto runs = static_cast<double>(state.iterations());
  if (!report_routed_counters(state, field, integ, schedule, steps, c)) return;
  const double pass_bytes = static_cast<double>(c.b * c.d) * sizeof(value_t);
  report_bandwidth(state, passes / runs * pass_bytes, seconds, c.b * c.d);
}

void run(benchmark::State& state, timed_case t) {
  if (t.threads > 1 && !host_threads_available()) {
    state.SkipWithError("built without OpenMP (ddm::openmp): host_context::threads > 1 would run on one thread");
    return;
  }
  const routed_case& c = t.c;
  const host_context ctx{.threads = t.threads};
  with_solver(c.solver, [&](const auto& integ) {
    if (c.field == field_id::analytic) {
      const synthetic::analytic_ddm model = analytic_model(c.k, c.d);
      auto field = make_routed_field<value_t>(model.experts(ctx, t.arith), model.router(1.0, ctx, t.arith),
                                              make_policy(c.policy), ctx);
      run_case(state, ctx, field, integ, c);
    } else {
      auto field = make_routed_field<value_t>(linear_experts(c.k), linear_router(c.k), make_policy(c.policy), ctx);
      run_case(state, ctx, field, integ, c);
    }
  });
}

void add(const timed_case& t) {
  benchmark::RegisterBenchmark(timed_case_name(t).c_str(), run, t)->UseRealTime()->Unit(benchmark::kMillisecond);
}

void add(const routed_case& c) { add(timed_case{c}); }

// The configurations bench/report.py compares with PyTorch (its torch_configs): their variants at 2
// threads and in float arithmetic.
[[nodiscard]] bool peer_config(const routed_case& c) {
  const bool solver = c.solver == euler::name() || c.solver == dpmpp_2m::name();
  const bool policy = c.policy == "top1" || c.policy == "top2" || c.policy == "full";
  return c.field == field_id::analytic && solver && policy && c.k == 8;
}

void add_variants(const routed_case& c) {
  using synthetic::arithmetic;
  add(timed_case{c, 2, arithmetic::exact});
  add(timed_case{c, 1, arithmetic::value_type});
  add(timed_case{c, 2, arithmetic::value_type});
}

}  // namespace

void register_benchmarks(const options& opt) {
  std::vector<routed_case> cases;
  for (field_id f : {field_id::analytic, field_id::linear}) {
    if (opt.shapes == grid::smoke) {
      for (const auto& s : all_solvers())
        for (const char* p : all_policies)
          for (int k : {2, 8}) cases.push_back({f, s, p, k, 16, 64});
      continue;
    }
    for (const auto& s : all_solvers())
      for (const char* p : all_policies)
        for (int k : {2, 8, 16}) cases.push_back({f, s, p, k, 64, 1024});
    const index_t cap = f == field_id::analytic ? (index_t{1} << 22) : (index_t{1} << 26);
    for (const char* s : {euler::name(), dpmpp_2m::name()})
      for (const char* p : {"top1", "top2", "full"})
        for (index_t b : {1, 64, 1024})
          for (index_t d : {64, 1024, 16384, 65536}) {
            if (b * d > cap || (b == 64 && d == 1024)) continue;  // (64, 1024) is in the cross above
            cases.push_back({f, s, p, 8, b, d});
          }
  }
  // The 1-thread exact grid first, in its former order; the variants after it.
  for (const routed_case& c : cases) add(c);
  for (const routed_case& c : cases)
    if (peer_config(c)) add_variants(c);
}

}  // namespace ddm::bench
