// Host threads: routed sampling of the analytic DDM at N threads against the same run at 1 thread,
// and float arithmetic (ddm::synthetic::arithmetic::value_type) against the exact path, paired.
//
// Each iteration runs the configurations of one benchmark in turn from the same noise, each a whole
// ddm::sample() over uniform(8) with its own routed field (experts, router, policy and the
// sampler's algebra all on the same host_context), and times each run. The machine is shared and
// its load moves: pairing the runs within an iteration makes the ratios compare like with like.
// Reported (medians over iterations):
//   ms_1t        a run at 1 thread, exact arithmetic (the baseline)
//   ms_<N>t      the same at N threads;           speedup_<N>t = ms_1t / ms_<N>t
//   ms_1t_f32    1 thread, float arithmetic;      f32_speedup  = ms_1t / ms_1t_f32
//   ms_<N>t_f32  N threads, float arithmetic;     f32_speedup_<N>t = ms_1t / ms_<N>t_f32
// and the runs' bits are checked: every thread count gives the 1-thread result of its arithmetic
// (the benchmark fails with an error otherwise).
//
// Grid (full): Euler and DPM-Solver++(2M) x top-2 and full ensemble x K = 8 x (B, D) in
// (1, 65536), (64, 1024), (64, 16384), (1024, 1024), (1024, 4096); N = 2. Smoke: (16, 64), N = 2.
// min_work_per_thread stays at its default, so small loops (B = 1 routing, say) run inline.

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "support/bench_support.hpp"
#include "support/routed_cases.hpp"

namespace ddm::bench {
namespace {

constexpr std::size_t steps = 8;

struct threads_case {
  std::string solver;  // ddm's names (with_solver, make_policy)
  std::string policy;
  int k;
  index_t b;
  index_t d;
  int threads;
};

[[nodiscard]] double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void run(benchmark::State& state, threads_case c) {
  const synthetic::analytic_ddm model = analytic_model(c.k, c.d);
  batch<value_t> noise(c.b, c.d);
  fill_normal(host_context{}, noise.view(), 2026);
  const time_schedule schedule = schedules::uniform(static_cast<long>(steps));
  using synthetic::arithmetic;
  struct config {
    host_context ctx;
    arithmetic arith;
  };
  const config configs[] = {{host_context{.threads = 1}, arithmetic::exact},
                            {host_context{.threads = c.threads}, arithmetic::exact},
                            {host_context{.threads = 1}, arithmetic::value_type},
                            {host_context{.threads = c.threads}, arithmetic::value_type}};
  constexpr int n_configs = 4;
  with_solver(c.solver, [&](const auto& integ) {
    using field_t = decltype(make_routed_field<value_t>(model.experts(), model.router(1.0), make_policy(c.policy)));
    std::vector<field_t> fields;
    std::vector<batch<value_t>> xs;
    for (const config& cf : configs) {
      fields.push_back(make_routed_field<value_t>(model.experts(cf.ctx, cf.arith), model.router(1.0, cf.ctx, cf.arith),
                                                  make_policy(c.policy), cf.ctx));
      xs.emplace_back(c.b, c.d);
    }
    auto run_one = [&](int i) {
      copy(configs[i].ctx, xs[i].view(), noise);
      (void)sample(configs[i].ctx, sample_options{}, fields[i], xs[i].view(), schedule, integ);
    };
    // One untimed run each sizes the workspaces; then the bits: N threads give the 1-thread result.
    for (int i = 0; i < n_configs; ++i) run_one(i);
    for (int i : {1, 3}) {
      const bool same = std::memcmp(xs[i].data(), xs[i - 1].data(), sizeof(value_t) * xs[i].size()) == 0;
      if (!same) {
        state.SkipWithError("the run at N threads differs from the run at 1 thread");
        return;
      }
    }
    std::vector<double> ms[n_configs];
    for (auto _ : state) {
      for (int i = 0; i < n_configs; ++i) {
        const loop_timer timer;
        run_one(i);
        ms[i].push_back(1e3 * timer.seconds());
        benchmark::DoNotOptimize(xs[i].data());
      }
    }
    const double base = median(ms[0]);
    const std::string n = std::to_string(c.threads) + "t";
    state.counters["ms_1t"] = base;
    state.counters["ms_" + n] = median(ms[1]);
    state.counters["speedup_" + n] = base / median(ms[1]);
    state.counters["ms_1t_f32"] = median(ms[2]);
    state.counters["f32_speedup"] = base / median(ms[2]);
    state.counters["ms_" + n + "_f32"] = median(ms[3]);
    state.counters["f32_speedup_" + n] = base / median(ms[3]);
  });
}

void add(const threads_case& c) {
  char name[160];
  std::snprintf(name, sizeof name, "threads/analytic/%s/%s/K:%d/B:%td/D:%td/N:%d", c.solver.c_str(),
                c.policy.c_str(), c.k, c.b, c.d, c.threads);
  benchmark::RegisterBenchmark(name, run, c)->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

void register_benchmarks(const options& opt) {
  if (opt.shapes == grid::smoke) {
    add({"euler", "top2", 8, 16, 64, 2});
    return;
  }
  struct shape {
    index_t b, d;
  };
  for (const char* s : {"euler", "dpm++2m"})
    for (const char* p : {"top2", "full"})
      for (shape sh : {shape{1, 65536}, shape{64, 1024}, shape{64, 16384}, shape{1024, 1024}, shape{1024, 4096}})
        add({s, p, 8, sh.b, sh.d, 2});
}

}  // namespace ddm::bench
