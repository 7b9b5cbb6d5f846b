#pragma once
// The counters the host and the device routed suites (routing_bench.cpp,
// cuda_routed_sampling_bench.cu) both report. Apart from routed_cases.hpp, which programs that are
// not benchmarks (bench/peers/export_peer_data.cpp) include too.

#include <cstddef>

#include <benchmark/benchmark.h>

#include <ddm/ddm.hpp>

#include "bench_support.hpp"
#include "routed_cases.hpp"

namespace ddm::bench {

/// The counters both routed suites report for a finished timing loop of `runs` sampling runs of
/// `steps` steps over field: time per step, expert evaluations per sample, field calls per run.
/// False (the benchmark skipped with an error) when the field was called a different number of
/// times than the integrator says: the traffic model the bandwidth counters rest on is stale.
template <class Field, class Integrator>
[[nodiscard]] bool report_routed_counters(benchmark::State& state, const Field& field, const Integrator& integ,
                                          const time_schedule& schedule, std::size_t steps, const routed_case& c) {
  const auto runs = static_cast<double>(state.iterations());
  if constexpr (fixed_step_integrator<Integrator>) {
    if (field.calls() != integ.evaluations(schedule) * state.iterations()) {
      state.SkipWithError("field evaluations differ from the integrator's count: the traffic model is stale");
      return false;
    }
  }
  state.SetItemsProcessed(state.iterations() * c.b);
  state.counters["s_per_step"] =
      benchmark::Counter(runs * static_cast<double>(steps), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["expert_evals_per_sample"] =
      average(static_cast<double>(field.expert_evaluations()), runs * static_cast<double>(c.b));
  state.counters["field_evals"] = average(static_cast<double>(field.calls()), runs);
  state.counters["steps"] = static_cast<double>(steps);
  return true;
}

}  // namespace ddm::bench
