#pragma once
// What the CUDA benchmarks share: skipping without a GPU, GPU timing with CUDA events, and the
// device-to-device copy that every bandwidth is compared with, measured by the same process.
//
// Every benchmark times its work on the GPU with CUDA events (manual time), `reps` operations
// between two events so that launch latency does not dominate, and reports bytes per second of
// compulsory traffic and `vs_memcpy`: that bandwidth divided by the bandwidth of cudaMemcpyAsync
// device-to-device of the same number of floats, measured just before. A ratio near 1 means the
// operation runs at the speed of a copy, which is what a memory-bound operation can reach.

#include <benchmark/benchmark.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>

#include <ddm/cuda.hpp>

namespace ddm::bench {

inline constexpr int reps = 10;

/// True (and the benchmark marked skipped with the runtime's reason) when there is no usable GPU.
inline bool skipped_without_gpu(benchmark::State& state) {
  std::string why;
  if (ddm::cuda::device_available(&why)) return false;
  state.SkipWithError(("no GPU: " + why).c_str());
  return true;
}

class event_pair {
 public:
  event_pair() {
    DDM_CUDA_CHECK(cudaEventCreate(&start_));
    DDM_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  event_pair(const event_pair&) = delete;
  event_pair& operator=(const event_pair&) = delete;
  ~event_pair() {
    (void)cudaEventDestroy(start_);
    (void)cudaEventDestroy(stop_);
  }
  // Seconds the GPU spent on what `body` enqueues on ctx's stream.
  template <class Body>
  double time(const ddm::cuda_context& ctx, Body&& body) {
    DDM_CUDA_CHECK(cudaEventRecord(start_, ctx.stream()));
    body();
    DDM_CUDA_CHECK(cudaEventRecord(stop_, ctx.stream()));
    DDM_CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0;
    DDM_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    return static_cast<double>(ms) * 1e-3;
  }

 private:
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
};

/// reps device-to-device copies of `bytes` bytes; returns bytes per second (read + write).
inline double memcpy_bandwidth(const ddm::cuda_context& ctx, void* dst, const void* src, std::size_t bytes) {
  event_pair events;
  auto body = [&] {
    for (int i = 0; i < reps; ++i)
      DDM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx.stream()));
  };
  (void)events.time(ctx, body);  // warm-up
  double best = 0;
  for (int trial = 0; trial < 5; ++trial) {
    const double s = events.time(ctx, body);
    best = std::max(best, 2.0 * static_cast<double>(bytes) * reps / s);
  }
  return best;
}

/// The copy bandwidth at `floats` floats, measured once per size and process.
inline double reference_bandwidth(const ddm::cuda_context& ctx, ddm::index_t floats) {
  static std::map<ddm::index_t, double> measured;
  if (auto it = measured.find(floats); it != measured.end()) return it->second;
  ddm::batch<float, ddm::cuda_space> a(ctx, 1, floats);
  ddm::batch<float, ddm::cuda_space> b(ctx, 1, floats);
  const double bw = memcpy_bandwidth(ctx, b.data(), a.data(), static_cast<std::size_t>(floats) * sizeof(float));
  measured.emplace(floats, bw);
  return bw;
}

/// The timing loop: each iteration is `reps` calls of `op`, each moving `bytes_per_op` bytes;
/// reports bytes per second and vs_memcpy against a copy of `floats` floats.
template <class Op>
void run_timed(benchmark::State& state, const ddm::cuda_context& ctx, ddm::index_t floats, double bytes_per_op, Op&& op) {
  event_pair events;
  auto body = [&] {
    for (int i = 0; i < reps; ++i) op();
  };
  (void)events.time(ctx, body);  // warm-up: first launches, memory pool growth
  double seconds = 0;
  for (auto _ : state) {
    const double s = events.time(ctx, body);
    state.SetIterationTime(s);
    seconds += s;
  }
  const double bytes = bytes_per_op * reps * static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["vs_memcpy"] = bytes / seconds / reference_bandwidth(ctx, floats);
}

}  // namespace ddm::bench
