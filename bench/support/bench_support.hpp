#pragma once
// What every ddm benchmark shares: the grid it runs (full or smoke), the triad baseline it
// reports bandwidth against, and the counters that put a measurement next to that baseline.
//
// A suite defines ddm::bench::register_benchmarks(const options&) and registers its benchmarks
// there (benchmark::RegisterBenchmark); bench/support/bench_main.cpp parses --ddm_grid=smoke|full,
// calls it, then hands the remaining flags to Google Benchmark. Registering at run time lets a
// suite pick its shapes from the grid, so the CTest smoke run stays small without a filter.
//
// Bandwidth. A benchmark states the bytes it must move per iteration (its traffic model, in its
// own comments); bytes_per_second is that over the measured (real) time, and triad_ratio divides it
// by the bandwidth of a triad a = b + s c on arrays of the same number of elements, measured once
// per size in this same process (best of several timed blocks, so a briefly loaded machine does
// not lower the baseline). A ratio near 1 means the benchmark runs at the memory limit.

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include <ddm/core/batch.hpp>

namespace ddm::bench {

enum class grid {
  full,   ///< the documented grid (bench/README in docs/performance.md)
  smoke,  ///< small shapes only: the CTest run that keeps benchmarks from rotting
};

struct options {
  grid shapes = grid::full;
};

/// Defined by each suite: register its benchmarks for the given options.
void register_benchmarks(const options& opt);

/// The options the process was started with (set by bench_main before registration).
[[nodiscard]] const options& current_options() noexcept;

/// a[i] = b[i] + s c[i]: the reference loop. Compiled with the same flags as everything it is
/// compared with.
void triad_kernel(float* a, const float* b, const float* c, float s, index_t n) noexcept;

/// Bytes per second of triad_kernel on three arrays of n floats (3 n sizeof(float) bytes per
/// pass), measured on first use for each n and cached.
[[nodiscard]] double triad_bandwidth(index_t n);

/// Wall-clock seconds of a benchmark's timing loop: construct it just before the loop and read
/// seconds() right after (every ddm::bench benchmark uses real time).
class loop_timer {
 public:
  loop_timer() : start_(std::chrono::steady_clock::now()) {}
  [[nodiscard]] double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

/// Sets bytes_per_second (bytes_per_iteration * iterations / seconds), triad_ratio (the same over
/// the triad bandwidth at `elements` floats per array) and triad_GBps (that baseline) on `state`.
void report_bandwidth(benchmark::State& state, double bytes_per_iteration, double seconds, index_t elements);

/// A per-iteration average as a counter (e.g. expert evaluations per sample).
[[nodiscard]] inline benchmark::Counter average(double total, double per) {
  return benchmark::Counter(per > 0 ? total / per : 0.0);
}

}  // namespace ddm::bench
