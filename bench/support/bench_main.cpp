// The main() of every ddm benchmark suite: --ddm_grid=smoke|full selects the shapes the suite
// registers, the other flags go to Google Benchmark. Also home of the shared triad baseline.

#include "bench_support.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include <ddm/core/algebra.hpp>

namespace ddm::bench {

namespace {
options g_options;
}  // namespace

const options& current_options() noexcept { return g_options; }

void triad_kernel(float* a, const float* b, const float* c, float s, index_t n) noexcept {
  for (index_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
}

double triad_bandwidth(index_t n) {
  static std::map<index_t, double> cache;
  if (const auto it = cache.find(n); it != cache.end()) return it->second;
  ddm::batch<float> a(1, n), b(1, n), c(1, n);
  const ddm::host_context ctx{};
  ddm::fill(ctx, b.view(), 1.0F);
  ddm::fill(ctx, c.view(), 2.0F);
  const double bytes = 3.0 * static_cast<double>(n) * sizeof(float);
  // Blocks of at least ~5 ms (1 ms in the smoke grid), best of 7: the machine's capacity, not an
  // average over whatever else ran meanwhile.
  const double block_s = g_options.shapes == grid::smoke ? 1e-3 : 5e-3;
  const int blocks = g_options.shapes == grid::smoke ? 2 : 7;
  using clock = std::chrono::steady_clock;
  triad_kernel(a.data(), b.data(), c.data(), 0.5F, n);  // touch every page
  long reps = 1;
  for (;;) {
    const auto t0 = clock::now();
    for (long r = 0; r < reps; ++r) {
      triad_kernel(a.data(), b.data(), c.data(), 0.5F, n);
      benchmark::DoNotOptimize(a.data());
      benchmark::ClobberMemory();
    }
    if (std::chrono::duration<double>(clock::now() - t0).count() >= block_s || reps > (1L << 30)) break;
    reps *= 2;
  }
  double best = 0;
  for (int blk = 0; blk < blocks; ++blk) {
    const auto t0 = clock::now();
    for (long r = 0; r < reps; ++r) {
      triad_kernel(a.data(), b.data(), c.data(), 0.5F, n);
      benchmark::DoNotOptimize(a.data());
      benchmark::ClobberMemory();
    }
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    best = std::max(best, bytes * static_cast<double>(reps) / s);
  }
  cache.emplace(n, best);
  return best;
}

void report_bandwidth(benchmark::State& state, double bytes_per_iteration, double seconds, index_t elements) {
  const double achieved = bytes_per_iteration * static_cast<double>(state.iterations()) / seconds;
  const double triad = triad_bandwidth(elements);
  state.counters["bytes_per_second"] = benchmark::Counter(achieved, benchmark::Counter::kDefaults,
                                                          benchmark::Counter::kIs1024);
  state.counters["triad_ratio"] = achieved / triad;
  state.counters["triad_GBps"] = triad * 1e-9;
}

}  // namespace ddm::bench

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    constexpr const char* flag = "--ddm_grid=";
    if (std::strncmp(argv[i], flag, std::strlen(flag)) == 0) {
      const char* value = argv[i] + std::strlen(flag);
      if (std::strcmp(value, "smoke") == 0) {
        ddm::bench::g_options.shapes = ddm::bench::grid::smoke;
      } else if (std::strcmp(value, "full") == 0) {
        ddm::bench::g_options.shapes = ddm::bench::grid::full;
      } else {
        std::fprintf(stderr, "%s: --ddm_grid=%s, expected smoke or full\n", argv[0], value);
        return 2;
      }
      continue;
    }
    args.push_back(argv[i]);
  }
  ddm::bench::register_benchmarks(ddm::bench::g_options);
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
