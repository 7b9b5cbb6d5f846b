// One forward pass of a DiT expert on the host backend (OpenBLAS GEMMs, OpenMP attention and
// element-wise work), at the shapes of DiT-S/2 and DiT-B/2 (256 px: 32x32x4 latents, 256
// tokens), with random weights. Counters: GFLOP/s counts 2 x the multiply-accumulates of the
// layers (the DiT paper's "Gflops" are MACs). bench/dit_forward_compare.py runs the same shapes
// in PyTorch with the same thread count and prints the ratio.
//
// The "isa" argument pins the instruction set of the backend's own kernels (dit/host_isa.hpp):
// 0 portable, 1 AVX2 + FMA, 2 AVX-512; cases the CPU cannot run are skipped. Built twice:
// ddm_bench_dit_forward with -march=native (its portable path is then native code) and
// ddm_bench_dit_forward_default without -march, as a user's project would build it, where the
// portable path is SSE2 and the others are the run-time dispatch.
//
// The "tiny" shape only keeps the CTest smoke run short.

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <ddm/core/rng.hpp>
#include <ddm/io/safetensors.hpp>
#include <ddm/io/safetensors_writer.hpp>

#include "dit/backend_host.hpp"
#include "support/random_dit.hpp"
#include "dit/dit_model.hpp"
#include "dit/host_isa.hpp"

namespace {

dit::dit_config shape(int which) {
  if (which == 0) {  // tiny: keeps the smoke run fast
    dit::dit_config c = dit::dit_config::preset("DiT-S/2");
    c.input_size = 8;
    c.depth = 2;
    c.hidden_size = 64;
    c.num_heads = 1;
    return c;
  }
  return dit::dit_config::preset(which == 1 ? "DiT-S/2" : "DiT-B/2");
}

void dit_forward(benchmark::State& state) {
  const auto c = shape(static_cast<int>(state.range(0)));
  const auto b = static_cast<ddm::index_t>(state.range(1));
  const auto isa = static_cast<dit::host::isa>(state.range(2));
  if (!dit::host::isa_supported(isa)) {
    state.SkipWithError((std::string("this CPU lacks ") + dit::host::isa_name(isa)).c_str());
    return;
  }
  const dit::host::isa before = dit::host::active_isa();
  dit::host::pin_isa(isa);
  const auto model = ddm::bench::random_dit_model(c);
  ddm::batch<float> x(b, model->input_values());
  ddm::fill_normal(ddm::host_context{}, x.view(), 7);
  ddm::batch<float> out(b, model->output_values());
  const std::vector<float> t(static_cast<std::size_t>(b), 500.0f);
  std::vector<std::int32_t> y(static_cast<std::size_t>(b));
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int32_t>(i * 37 % 1000);
  dit::workspace<ddm::host_space> ws;
  model->forward({}, x.cview(), t, y, out.view(), ws);  // warm-up: workspace, thread pools
  for (auto _ : state) {
    model->forward({}, x.cview(), t, y, out.view(), ws);
    benchmark::DoNotOptimize(out.data());
  }
  const double flops = 2 * c.forward_macs() * double(b);
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["threads"] = dit::host_threads();
  state.SetLabel(std::string(state.range(0) == 0 ? "tiny" : state.range(0) == 1 ? "DiT-S/2" : "DiT-B/2") + ", " +
                 dit::host_blas_name() + ", " + dit::host::isa_name(isa));
  dit::host::pin_isa(before);
}

BENCHMARK(dit_forward)
    ->ArgNames({"shape", "batch", "isa"})
    ->ArgsProduct({{0}, {1}, {0, 1, 2}})
    ->ArgsProduct({{1}, {1, 4, 8}, {0, 1, 2}})
    ->ArgsProduct({{2}, {1, 4}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
