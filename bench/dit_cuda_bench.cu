// One DiT forward pass on the GPU (examples/02_dit, dit/backend_cuda.cuh), two ways:
//
//   ddm_bench_dit_cuda [Google Benchmark flags]
//       DiT-B/2 and DiT-XL/2 at 256 px (32x32x4 latents, 256 tokens), float and bf16 weight
//       storage, batch 1 and 8, random weights. GPU time per forward from CUDA events; counters
//       TFLOP/s (2 x the multiply-accumulates of the layers; the DiT paper's "Gflops" are MACs:
//       118.6 G per image for XL/2, 23.0 G for B/2) and ms. The "tiny" shape keeps the CTest
//       smoke run short; without a GPU every benchmark is skipped with the reason.
//
//   ddm_bench_dit_cuda --forward --model DiT-XL/2 --batch 8 --storage bf16 --weights W.safetensors
//                      --inputs I.safetensors [--output O.safetensors] [--iters 20] [--tf32]
//       the driver of bench/peers/dit_forward.py --compare: loads the checkpoint the script wrote
//       (the same weights as its PyTorch model), runs x, t, y of the inputs file, prints one JSON
//       object (milliseconds per forward: median, best, all) and writes the output for the script
//       to compare with PyTorch's.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ddm/io/safetensors.hpp>
#include <ddm/io/safetensors_writer.hpp>

#include "cuda_bench_support.hpp"
#include "dit/backend_cuda.cuh"
#include "dit/dit_model.hpp"

namespace {

using ddm::cuda_space;
using ddm::index_t;

dit::dit_config shape(int which) {
  if (which == 0) {  // tiny: keeps the smoke run fast
    dit::dit_config c = dit::dit_config::preset("DiT-S/2");
    c.input_size = 8;
    c.depth = 2;
    c.hidden_size = 72;
    c.num_heads = 1;
    return c;
  }
  return dit::dit_config::preset(which == 1 ? "DiT-B/2" : "DiT-XL/2");
}

const char* shape_name(int which) { return which == 0 ? "tiny" : which == 1 ? "DiT-B/2" : "DiT-XL/2"; }

// A checkpoint of random weights held in memory, BF16 (half the bytes of F32; float storage
// widens them exactly): uniform in +-1/sqrt(fan_in), PyTorch's Linear default, from a counter-
// based hash so that XL/2's 675M values take a few seconds.
std::shared_ptr<const ddm::io::safetensors_file> random_checkpoint(const dit::dit_config& c) {
  static std::map<int, std::shared_ptr<const ddm::io::safetensors_file>> cache;
  const int key = static_cast<int>(c.hidden_size * 1000 + c.depth * 10 + c.input_size);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  ddm::io::safetensors_writer w;
  std::uint64_t counter = 0;
  for (const auto& [name, dims] : dit::dit_model<>::checkpoint_layout(c)) {
    std::uint64_t n = 1;
    for (const auto s : dims) n *= s;
    const double fan_in = dims.size() >= 2 ? double(n / dims[0]) : double(c.hidden_size);
    const auto bound = static_cast<float>(1.0 / std::sqrt(fan_in));
    std::vector<std::byte> bytes(n * 2);
    for (std::uint64_t i = 0; i < n; ++i) {
      std::uint64_t z = (++counter) * 0x9E3779B97F4A7C15ull;  // splitmix64
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      const float u = static_cast<float>(z >> 40) * 0x1p-24f;  // [0, 1)
      const std::uint16_t word = ddm::io::float_to_bf16((2.0f * u - 1.0f) * bound);
      std::memcpy(bytes.data() + 2 * i, &word, 2);
    }
    w.add_raw(name, ddm::io::dtype::bf16, dims, bytes);
  }
  auto file = std::make_shared<const ddm::io::safetensors_file>(ddm::io::safetensors_file::from_bytes(
      w.to_bytes(), ddm::concat("random DiT checkpoint (width ", c.hidden_size, ", depth ", c.depth, ")")));
  cache[key] = file;
  return file;
}

std::shared_ptr<const dit::dit_model<cuda_space>> random_model(int which, dit::weight_storage storage,
                                                               const ddm::cuda_context& ctx) {
  static std::map<std::pair<int, int>, std::shared_ptr<const dit::dit_model<cuda_space>>> cache;
  const auto key = std::make_pair(which, static_cast<int>(storage));
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const auto c = shape(which);
  auto model = std::make_shared<const dit::dit_model<cuda_space>>(c, *random_checkpoint(c), true, ctx, storage);
  cache[key] = model;
  return model;
}

void dit_cuda_forward(benchmark::State& state) {
  if (ddm::bench::skipped_without_gpu(state)) return;
  const int which = static_cast<int>(state.range(0));
  const auto storage = state.range(1) == 0 ? dit::weight_storage::f32 : dit::weight_storage::bf16;
  const auto b = static_cast<index_t>(state.range(2));
  const ddm::cuda::stream stream;
  const ddm::cuda_context ctx = stream.context();
  const auto c = shape(which);
  const auto model = random_model(which, storage, ddm::cuda_context{});
  ddm::batch<float, cuda_space> x(ctx, b, model->input_values());
  ddm::fill_normal(ctx, x.view(), 7);
  ddm::batch<float, cuda_space> out(ctx, b, model->output_values());
  const std::vector<float> t(static_cast<std::size_t>(b), 500.0f);
  std::vector<std::int32_t> y(static_cast<std::size_t>(b));
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int32_t>(i * 37 % 1000);
  dit::workspace<cuda_space> ws(ctx);
  ddm::bench::event_pair events;
  auto forward = [&] { model->forward(ctx, x.cview(), t, y, out.view(), ws); };
  for (int i = 0; i < 3; ++i) (void)events.time(ctx, forward);  // warm-up: workspace, plans, clocks
  double seconds = 0;
  for (auto _ : state) {
    const double s = events.time(ctx, forward);
    state.SetIterationTime(s);
    seconds += s;
  }
  const double flops = 2 * c.forward_macs() * double(b) * double(state.iterations());
  state.counters["TFLOP/s"] = flops / seconds * 1e-12;
  state.counters["ms"] = 1e3 * seconds / double(state.iterations());
  state.SetLabel(std::string(shape_name(which)) + ", " + dit::to_string(storage) + " weights, TF32 " +
                 (dit::cuda_tf32() ? "on" : "off"));
}

BENCHMARK(dit_cuda_forward)
    ->ArgNames({"shape", "bf16", "batch"})
    ->Args({0, 0, 1})
    ->Args({0, 1, 2})
    ->Args({1, 0, 8})
    ->Args({1, 1, 1})
    ->Args({1, 1, 8})
    ->Args({2, 0, 8})
    ->Args({2, 1, 1})
    ->Args({2, 1, 8})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// --- the --forward driver of bench/peers/dit_forward.py --compare -------------------------------

[[noreturn]] void forward_usage(const char* why) {
  std::fprintf(stderr,
               "ddm_bench_dit_cuda --forward: %s\nusage: ddm_bench_dit_cuda --forward --model DiT-XL/2 --batch B "
               "--storage f32|bf16|f16 --weights FILE --inputs FILE [--output FILE] [--iters N] [--tf32]\n",
               why);
  std::exit(2);
}

int forward_mode(int argc, char** argv) {
  std::string model_name = "DiT-XL/2", storage_name = "bf16", weights, inputs, output;
  long batch = 8, iters = 20;
  bool tf32 = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) forward_usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    if (a == "--model") model_name = value();
    else if (a == "--batch") batch = std::stol(value());
    else if (a == "--storage") storage_name = value();
    else if (a == "--weights") weights = value();
    else if (a == "--inputs") inputs = value();
    else if (a == "--output") output = value();
    else if (a == "--iters") iters = std::stol(value());
    else if (a == "--tf32") tf32 = true;
    else forward_usage(("unknown argument " + a).c_str());
  }
  if (weights.empty() || inputs.empty()) forward_usage("--weights and --inputs are required");
  if (batch < 1 || iters < 1) forward_usage("--batch and --iters must be >= 1");
  const auto storage = storage_name == "f32"    ? dit::weight_storage::f32
                       : storage_name == "bf16" ? dit::weight_storage::bf16
                       : storage_name == "f16"  ? dit::weight_storage::f16
                                                : (forward_usage("--storage must be f32, bf16 or f16"),
                                                   dit::weight_storage::f32);
  std::string why;
  if (!ddm::cuda::device_available(&why)) {
    std::fprintf(stderr, "ddm_bench_dit_cuda --forward: no usable CUDA device (%s)\n", why.c_str());
    return 1;
  }
  try {
    dit::set_cuda_tf32(tf32);
    const ddm::cuda::stream stream;
    const ddm::cuda_context ctx = stream.context();
    const auto config = dit::dit_config::preset(model_name);  // 256 px, learn_sigma, 1000 classes + null
    const dit::dit_model<cuda_space> model(config, ddm::io::safetensors_file(weights), true, ctx, storage);
    const ddm::io::safetensors_file in(inputs);
    const auto b = static_cast<index_t>(batch);
    const auto xv = in.read<float>("x", {static_cast<std::uint64_t>(b), 4, 32, 32});
    const auto t = in.read<float>("t", {static_cast<std::uint64_t>(b)});
    std::vector<std::int32_t> y;
    for (const float v : in.read<float>("y", {static_cast<std::uint64_t>(b)})) y.push_back(static_cast<std::int32_t>(v));
    ddm::batch<float, cuda_space> x(ctx, b, model.input_values());
    ddm::copy(ctx, x.view(), ddm::batch_view<const float>(xv.data(), b, model.input_values()));
    ddm::batch<float, cuda_space> out(ctx, b, model.output_values());
    dit::workspace<cuda_space> ws(ctx);
    ddm::bench::event_pair events;
    auto forward = [&] { model.forward(ctx, x.cview(), t, y, out.view(), ws); };
    for (int i = 0; i < 3; ++i) (void)events.time(ctx, forward);
    std::vector<double> ms;
    for (long i = 0; i < iters; ++i) ms.push_back(1e3 * events.time(ctx, forward));
    std::vector<double> sorted = ms;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted[sorted.size() / 2];
    int device = 0;
    DDM_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    DDM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    std::printf("{\"model\": \"%s\", \"batch\": %ld, \"storage\": \"%s\", \"tf32\": %s, \"device\": \"%s\", "
                "\"ms_median\": %.4f, \"ms_best\": %.4f, \"tflops\": %.2f, \"ms_all\": [",
                model_name.c_str(), batch, storage_name.c_str(), tf32 ? "true" : "false", prop.name, median,
                sorted.front(), 2 * config.forward_macs() * double(b) / (median * 1e-3) * 1e-12);
    for (std::size_t i = 0; i < ms.size(); ++i) std::printf("%s%.4f", i ? ", " : "", ms[i]);
    std::printf("]}\n");
    if (!output.empty()) {
      std::vector<float> host(static_cast<std::size_t>(out.size()));
      ddm::copy(ctx, ddm::batch_view<float>(host.data(), out.rows(), out.cols()), out.cview());
      ddm::io::safetensors_writer w;
      w.add("output", {static_cast<std::uint64_t>(b), static_cast<std::uint64_t>(config.out_channels()),
                       static_cast<std::uint64_t>(config.input_size), static_cast<std::uint64_t>(config.input_size)},
            host);
      w.write(output);
    }
    return 0;
  } catch (const ddm::error& e) {
    std::fprintf(stderr, "ddm_bench_dit_cuda --forward: %s\n", e.message());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--forward") == 0) return forward_mode(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
