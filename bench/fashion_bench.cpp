// ddm's routed sampler on a learned Fashion-MNIST DDM folder (examples/03_fashion), the peer of
// bench/peers/fashion_sampler.py, which times PyTorch eager on the same weights with the same
// batch, schedule (Heun, uniform steps), router temperature 1 and policy. The networks run their
// GEMMs through OpenBLAS: set OPENBLAS_NUM_THREADS to the thread count the PyTorch side uses
// (torch.set_num_threads); the value is printed in the benchmark context.
//
//   OPENBLAS_NUM_THREADS=1 build/default/bench/ddm_bench_fashion --benchmark_repetitions=3
//   python bench/peers/fashion_sampler.py --threads 1

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <string>

#include <ddm/ddm.hpp>

#include "fashion/fields.hpp"
#include "fashion/folder.hpp"

namespace {

const std::shared_ptr<const fashion::ddm_folder>& classes_folder() {
  static const auto folder = fashion::load_folder(std::string(DDM_BENCH_FASHION_MODELS) + "/fashion-classes");
  return folder;
}

// One whole sampling run of B samples per iteration, from the same noise each time.
template <class Policy>
void sample_fashion(benchmark::State& state, Policy policy) {
  const auto& folder = classes_folder();
  const ddm::index_t b = state.range(0);
  const long steps = static_cast<long>(state.range(1));
  const ddm::index_t d = folder->cfg.latent_dim;
  const ddm::host_context ctx{};
  auto field = ddm::make_routed_field<float, ddm::host_space>(fashion::make_experts(folder),
                                                              fashion::learned_router(folder, 1.0), policy, ctx);
  ddm::batch<float> noise(b, d);
  ddm::batch<float> x(b, d);
  ddm::fill_normal(ctx, noise.view(), 0);
  const auto schedule = ddm::schedules::uniform(steps);
  field.reset_counts();
  for (auto _ : state) {
    ddm::copy(ctx, x.view(), noise.cview());
    ddm::sample(field, x, schedule, ddm::heun{});
    benchmark::DoNotOptimize(x.data());
  }
  const auto runs = static_cast<double>(state.iterations());
  state.counters["samples/s"] = benchmark::Counter(runs * static_cast<double>(b), benchmark::Counter::kIsRate);
  state.counters["expert_evals/sample"] = static_cast<double>(field.expert_evaluations()) / (runs * static_cast<double>(b));
}

void args(benchmark::internal::Benchmark* bm) {
  bm->ArgNames({"B", "steps"})->Args({1000, 32})->Args({64, 8})->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK_CAPTURE(sample_fashion, top2, ddm::top_2())->Apply(args);
BENCHMARK_CAPTURE(sample_fashion, full, ddm::full_ensemble{})->Apply(args);

}  // namespace

int main(int argc, char** argv) {
  const char* threads = std::getenv("OPENBLAS_NUM_THREADS");
  benchmark::AddCustomContext("OPENBLAS_NUM_THREADS", threads != nullptr ? threads : "(unset: OpenBLAS's default)");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
