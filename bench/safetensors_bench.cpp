// The safetensors reader's header parse against the size of the header. A header of 40,000
// tensors (2.6 MB) took 44 s before the parse was made linear (issue 13); the reference package
// reads it in about 0.15 s. Each case reports header bytes per second and, beside it, a plain
// nlohmann::json::parse of the same text (no duplicate-key, nesting or layout checks) as the
// baseline, so the ratio of the two is the cost of validation. Complexity() fits the time
// against the tensor count: O(N) is the claim.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <ddm/io/safetensors.hpp>

namespace {

// A file of `n` empty F32 tensors (shape [0], offsets [0, 0]): the header is all there is, so the
// time is the header parse and layout check alone. `metadata_keys` adds that many metadata entries.
std::vector<std::byte> many_tensors(std::int64_t n, std::int64_t metadata_keys = 0) {
  std::string h = "{";
  if (metadata_keys > 0) {
    h += R"("__metadata__":{)";
    for (std::int64_t i = 0; i < metadata_keys; ++i) {
      if (i != 0) h += ',';
      h += "\"key" + std::to_string(i) + "\":\"value\"";
    }
    h += "}";
  }
  for (std::int64_t i = 0; i < n; ++i) {
    if (i != 0 || metadata_keys > 0) h += ',';
    h += "\"model.layers." + std::to_string(i) + R"(.weight":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})";
  }
  h += "}";
  std::vector<std::byte> file(8 + h.size());
  const std::uint64_t len = h.size();
  std::memcpy(file.data(), &len, 8);
  std::memcpy(file.data() + 8, h.data(), h.size());
  return file;
}

void report(benchmark::State& state, std::size_t bytes, std::int64_t entries) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
  state.counters["header_MB"] = static_cast<double>(bytes) / 1e6;
  state.SetComplexityN(entries);
}

void BM_safetensors_tensors(benchmark::State& state) {
  const auto file = many_tensors(state.range(0));
  for (auto _ : state) {
    auto f = ddm::io::safetensors_file::from_bytes(file, "bench");
    benchmark::DoNotOptimize(f.tensors().data());
  }
  report(state, file.size(), state.range(0));
}

void BM_nlohmann_parse_baseline_tensors(benchmark::State& state) {
  const auto file = many_tensors(state.range(0));
  const std::string_view text(reinterpret_cast<const char*>(file.data() + 8), file.size() - 8);
  for (auto _ : state) {
    auto j = nlohmann::json::parse(text);
    benchmark::DoNotOptimize(j.size());
  }
  report(state, file.size(), state.range(0));
}

void BM_safetensors_metadata_keys(benchmark::State& state) {
  const auto file = many_tensors(0, state.range(0));
  for (auto _ : state) {
    auto f = ddm::io::safetensors_file::from_bytes(file, "bench");
    benchmark::DoNotOptimize(f.metadata().size());
  }
  report(state, file.size(), state.range(0));
}

BENCHMARK(BM_safetensors_tensors)->Arg(5000)->Arg(10000)->Arg(20000)->Arg(40000)->Arg(80000)->Unit(benchmark::kMillisecond)->Complexity(benchmark::oN);
BENCHMARK(BM_nlohmann_parse_baseline_tensors)->Arg(5000)->Arg(10000)->Arg(20000)->Arg(40000)->Arg(80000)->Unit(benchmark::kMillisecond)->Complexity(benchmark::oN);
BENCHMARK(BM_safetensors_metadata_keys)->Arg(10000)->Arg(20000)->Arg(40000)->Arg(80000)->Unit(benchmark::kMillisecond)->Complexity(benchmark::oN);

}  // namespace
