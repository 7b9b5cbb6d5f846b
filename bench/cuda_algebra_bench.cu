// Device algebra throughput beside a device-to-device cudaMemcpyAsync measured in the same binary.
//
// Every benchmark times its work on the GPU with CUDA events (manual time), `reps` operations
// between two events so that launch latency does not dominate, and reports bytes per second of
// compulsory traffic (each operand read once, the output written once) and `vs_memcpy`: that
// bandwidth divided by the bandwidth of cudaMemcpyAsync device-to-device of one operand's size,
// measured by the same process just before. A ratio near 1 means the operation runs at the speed
// of a copy, which is what a memory-bound update can reach.
//
// Without a GPU every benchmark reports "no GPU: <reason>" and the binary exits with status 0.

#include <benchmark/benchmark.h>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <string>

#include <ddm/cuda.hpp>

namespace {

using ddm::batch;
using ddm::cuda_space;
using ddm::index_t;

constexpr int reps = 10;

bool skipped_without_gpu(benchmark::State& state) {
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

// reps device-to-device copies of `bytes` bytes; returns bytes per second (read + write).
double memcpy_bandwidth(const ddm::cuda_context& ctx, void* dst, const void* src, std::size_t bytes) {
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

// The copy bandwidth at `floats` floats, measured once per size and process.
double reference_bandwidth(const ddm::cuda_context& ctx, index_t floats) {
  static std::map<index_t, double> measured;
  if (auto it = measured.find(floats); it != measured.end()) return it->second;
  batch<float, cuda_space> a(ctx, 1, floats);
  batch<float, cuda_space> b(ctx, 1, floats);
  const double bw = memcpy_bandwidth(ctx, b.data(), a.data(), static_cast<std::size_t>(floats) * sizeof(float));
  measured.emplace(floats, bw);
  return bw;
}

// Runs the timing loop: each iteration is `reps` calls of `op`; `bytes_per_op` of traffic each.
template <class Op>
void run_timed(benchmark::State& state, const ddm::cuda_context& ctx, index_t floats, double bytes_per_op, Op&& op) {
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

void memcpy_d2d(benchmark::State& state) {
  if (skipped_without_gpu(state)) return;
  const ddm::cuda_context ctx;
  const index_t n = state.range(0);
  batch<float, cuda_space> a(ctx, 1, n);
  batch<float, cuda_space> b(ctx, 1, n);
  const auto bytes = static_cast<std::size_t>(n) * sizeof(float);
  run_timed(state, ctx, n, 2.0 * static_cast<double>(bytes), [&] {
    DDM_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, ctx.stream()));
  });
}

// One fused lincomb over N operands: N reads and one write per element.
template <int N>
void fused_lincomb(benchmark::State& state) {
  if (skipped_without_gpu(state)) return;
  const ddm::cuda_context ctx;
  const index_t n = state.range(0);
  batch<float, cuda_space> out(ctx, 1, n), a(ctx, 1, n), b(ctx, 1, n), c(ctx, 1, n), d(ctx, 1, n);
  ddm::fill_normal(ctx, a.view(), 1);
  ddm::fill_normal(ctx, b.view(), 2);
  const double bytes = (N + 1) * static_cast<double>(n) * sizeof(float);
  run_timed(state, ctx, n, bytes, [&] {
    if constexpr (N == 2) ddm::lincomb(ctx, out.view(), {1.0, 0.5}, a, b);
    if constexpr (N == 4) ddm::lincomb(ctx, out.view(), {1.0, 0.5, 0.25, 0.125}, a, b, c, d);
  });
}

// A field as cheap as a field can be: v = -x (one read, one write). Its cost is memory traffic.
struct negation_field {
  ddm::cuda_context ctx;
  void operator()(ddm::batch_view<const float, cuda_space> x, double /*t*/,
                  ddm::batch_view<float, cuda_space> v) const {
    ddm::lincomb(ctx, v, {-1.0}, x);
  }
};

// One integrator step, field included. Passes: the field's 2, plus the update's.
template <class Integrator>
void integrator_step(benchmark::State& state, Integrator integ, int update_passes) {
  if (skipped_without_gpu(state)) return;
  const ddm::cuda_context ctx;
  const index_t rows = state.range(0);
  const index_t cols = state.range(1);
  batch<float, cuda_space> x(ctx, rows, cols);
  ddm::fill_normal(ctx, x.view(), 3);
  auto stepper = integ.template make_stepper<float>(ctx, rows, cols);
  negation_field field{ctx};
  double t = 0.9;
  const double bytes = (2 + update_passes) * static_cast<double>(rows * cols) * sizeof(float);
  run_timed(state, ctx, rows * cols, bytes, [&] {
    stepper.step(field, x.view(), t, t - 1e-4);
    t -= 1e-4;
    if (t < 0.1) {
      t = 0.9;
      if constexpr (requires { stepper.reset(); }) stepper.reset();
    }
  });
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * reps * rows);
}

void sizes(benchmark::internal::Benchmark* b) {
  // 16 MiB per operand (partly resident in a 50 MB L2) and 256 MiB (DRAM).
  for (index_t n : {index_t{1} << 22, index_t{1} << 26}) b->Arg(n);
  b->ArgNames({"n"})->UseManualTime();
}

void shapes(benchmark::internal::Benchmark* b) {
  for (index_t rows : {256, 4096}) b->Args({rows, 16384});
  b->ArgNames({"B", "D"})->UseManualTime();
}

}  // namespace

BENCHMARK(memcpy_d2d)->Apply(sizes);
BENCHMARK(fused_lincomb<2>)->Apply(sizes);
BENCHMARK(fused_lincomb<4>)->Apply(sizes);
// euler: update reads x, v and writes x: 3
BENCHMARK_CAPTURE(integrator_step, euler, ddm::euler{}, 3)->Apply(shapes);
// 2m: D = x - t v: 3, update reads x, D_i, D_{i-1}, writes x: 4
BENCHMARK_CAPTURE(integrator_step, dpmpp_2m, ddm::dpmpp_2m{}, 7)->Apply(shapes);
