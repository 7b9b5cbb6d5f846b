// What each diagnostic instrument costs: a routed sampler run (analytic DDM, K = 8, top-2, Heun
// over uniform(8)) with the instrument attached, against the same run without it, alternately in
// each iteration so that both see the same machine. Reported per schedule step:
//   base_s_per_step, with_s_per_step   medians of the two
//   time_ratio                        with / base
//   extra_field_evals_per_step        routed-field calls the instrument adds
//   extra_expert_evals_per_step       whole-batch expert calls it makes itself (the routing
//                                     instruments need every expert's velocity, whatever the
//                                     policy selected)
//
// Instruments: the L_eff observer (Frobenius by Hutchinson with 4 probes, and the dominant
// eigenvalue by power iteration, both by central differences: the routed field has no jvp; the
// spectral norm needs a vjp and is not offered for it), perturbation amplification (two runs),
// step refinement (N and 2N steps), expert disagreement with angular deviation and the alignment
// ranks, the last two through a routing observer at every routed call.
//
// Grid (full): (B, D) = (64, 64) and (256, 1024). Smoke: (8, 16).

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "support/bench_support.hpp"
#include "support/routed_cases.hpp"

namespace ddm::bench {
namespace {

namespace dd = ddm::diagnostics;

constexpr std::size_t steps = 8;

enum class instrument { leff_frobenius, leff_eigenvalue, perturbation, refinement, disagreement_angular, alignment };

const char* label(instrument i) {
  switch (i) {
    case instrument::leff_frobenius: return "leff_frobenius";
    case instrument::leff_eigenvalue: return "leff_dominant_eigenvalue";
    case instrument::perturbation: return "perturbation_amplification";
    case instrument::refinement: return "step_refinement";
    case instrument::disagreement_angular: return "disagreement+angular_deviation";
    case instrument::alignment: return "alignment_ranks";
  }
  return "?";
}

[[nodiscard]] double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void run(benchmark::State& state, instrument which, index_t b, index_t d) {
  const host_context ctx{};
  const int k = 8;
  const synthetic::analytic_ddm model = analytic_model(k, d);
  auto base_field = make_routed_field<value_t>(model.experts(), model.router(1.0), top_2());
  auto field = make_routed_field<value_t>(model.experts(), model.router(1.0), top_2());
  batch<value_t> noise(b, d), x(b, d);
  fill_normal(ctx, noise.view(), 2026);
  const time_schedule schedule = schedules::uniform(static_cast<long>(steps));
  const heun integ{};

  // The routing instruments' glue: at every routed call, every expert on the call's batch.
  auto experts = model.experts();
  std::vector<batch<value_t>> expert_v;
  std::size_t expert_calls = 0;
  dd::angular_deviation_summary angles;
  batch<value_t> centroids(k, d);
  for (index_t r = 0; r < k; ++r)
    for (index_t c = 0; c < d; ++c) centroids(r, c) = static_cast<value_t>(model.centroids()(r, c));
  dd::alignment_profile profile;
  if (which == instrument::disagreement_angular) {
    field.add_observer([&](const routing_event<value_t>& e) {
      if (expert_v.empty() || expert_v.front().rows() != e.x.rows())
        for (int i = 0; i < k; ++i) expert_v.emplace_back(e.x.rows(), e.x.cols());
      std::vector<batch_view<const value_t>> views;
      for (int i = 0; i < k; ++i) {
        experts.evaluate(static_cast<std::size_t>(i), e.x, e.t, expert_v[static_cast<std::size_t>(i)].view());
        views.push_back(expert_v[static_cast<std::size_t>(i)].cview());
        ++expert_calls;
      }
      const auto span = std::span<const batch_view<const value_t>>(views);
      benchmark::DoNotOptimize(dd::expert_disagreement(ctx, span).data());
      angles.add(dd::angular_deviation(ctx, span, e.v, e.selected));
    });
  } else if (which == instrument::alignment) {
    field.add_observer([&](const routing_event<value_t>& e) {
      profile.add(dd::alignment_ranks(ctx, e.x, e.t, e.v, e.selected, centroids.cview()));
    });
  }

  auto base_run = [&] {
    copy(ctx, x.view(), noise);
    (void)sample(base_field, x, schedule, integ);
  };
  auto instrumented_run = [&] {
    switch (which) {
      case instrument::leff_frobenius: {
        copy(ctx, x.view(), noise);
        auto obs = dd::make_trajectory_sensitivity<value_t>(field);
        (void)sample(field, x, schedule, integ, obs);
        benchmark::DoNotOptimize(obs.cumulative_iqr());
        break;
      }
      case instrument::leff_eigenvalue: {
        copy(ctx, x.view(), noise);
        dd::sensitivity_options o;
        o.measure = dd::sensitivity_measure::dominant_eigenvalue;
        auto obs = dd::make_trajectory_sensitivity<value_t>(field, o);
        (void)sample(field, x, schedule, integ, obs);
        benchmark::DoNotOptimize(obs.cumulative_iqr());
        break;
      }
      case instrument::perturbation: {
        const auto r = dd::perturbation_amplification(ctx, field, noise.cview(), 1e-3, 7, schedule, integ);
        benchmark::DoNotOptimize(r.amplification.data());
        break;
      }
      case instrument::refinement: {
        const auto r = dd::step_refinement(ctx, field, noise.cview(), schedule, integ);
        benchmark::DoNotOptimize(r.mean);
        break;
      }
      case instrument::disagreement_angular:
      case instrument::alignment:
        copy(ctx, x.view(), noise);
        (void)sample(field, x, schedule, integ);
        break;
    }
  };

  base_run();  // size the workspaces
  instrumented_run();
  base_field.reset_counts();
  field.reset_counts();
  expert_calls = 0;
  std::vector<double> t_base, t_with;
  for (auto _ : state) {
    const loop_timer a;
    base_run();
    const double s_base = a.seconds();
    const loop_timer w;
    instrumented_run();
    const double s_with = w.seconds();
    t_base.push_back(s_base);
    t_with.push_back(s_with);
    state.SetIterationTime(s_base + s_with);
  }
  const auto runs = static_cast<double>(state.iterations());
  const double m_base = median(t_base) / steps;
  const double m_with = median(t_with) / steps;
  state.counters["base_s_per_step"] = m_base;
  state.counters["with_s_per_step"] = m_with;
  state.counters["time_ratio"] = m_with / m_base;
  state.counters["extra_field_evals_per_step"] =
      (static_cast<double>(field.calls()) - static_cast<double>(base_field.calls())) / (runs * steps);
  state.counters["extra_expert_evals_per_step"] = static_cast<double>(expert_calls) / (runs * steps);
}

}  // namespace

void register_benchmarks(const options& opt) {
  std::vector<std::pair<index_t, index_t>> shapes{{8, 16}};
  if (opt.shapes == grid::full) shapes = {{64, 64}, {256, 1024}};
  for (auto [b, d] : shapes)
    for (instrument i : {instrument::leff_frobenius, instrument::leff_eigenvalue, instrument::perturbation,
                         instrument::refinement, instrument::disagreement_angular, instrument::alignment}) {
      char name[160];
      std::snprintf(name, sizeof name, "diagnostics/%s/analytic/heun/top2/K:8/B:%td/D:%td", label(i), b, d);
      benchmark::RegisterBenchmark(name, run, i, b, d)->UseManualTime()->Unit(benchmark::kMillisecond);
    }
}

}  // namespace ddm::bench
