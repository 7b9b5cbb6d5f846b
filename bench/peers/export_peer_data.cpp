// Writes what the PyTorch peer (bench/peers/torch_ddm.py) needs to run the same routed sampler on
// the same analytic DDM, as safetensors files (an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and byte range, then the raw little-endian data):
//
//   model_K<K>_D<D>.safetensors   the parameters of analytic_model(K, D) (bench/support):
//                                 means (J, D), scales (J), log_weights (J, overall),
//                                 log_cluster_weights (J, within the cluster), cluster_begin (K + 1)
//   check_K<K>_B<B>_D<D>.safetensors
//                                 the same parameters, noise (B, D) and ddm's final samples
//                                 sample/<solver>/<policy> (B, D) for Euler and DPM-Solver++(2M)
//                                 over uniform(8) with top-1, top-2 and the full ensemble, router
//                                 tau = 1, all in double
//
// Usage: ddm_export_peer_data <output directory>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "support/routed_cases.hpp"

namespace {

using ddm::index_t;

struct tensor {
  std::string name;
  std::string dtype;  // F64 or I64
  std::vector<std::int64_t> shape;
  std::vector<char> bytes;
};

tensor f64(std::string name, std::vector<std::int64_t> shape, const double* data, std::size_t n) {
  tensor t{std::move(name), "F64", std::move(shape), std::vector<char>(n * sizeof(double))};
  std::memcpy(t.bytes.data(), data, t.bytes.size());
  return t;
}

tensor i64(std::string name, const std::vector<std::int64_t>& values) {
  tensor t{std::move(name), "I64", {static_cast<std::int64_t>(values.size())}, std::vector<char>(values.size() * 8)};
  std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

void write_safetensors(const std::string& path, const std::vector<tensor>& tensors, const std::string& metadata) {
  static_assert(sizeof(double) == 8, "safetensors F64 is 8 bytes");
  std::string header = "{\"__metadata__\":{" + metadata + "}";
  std::size_t offset = 0;
  for (const tensor& t : tensors) {
    header += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (std::size_t i = 0; i < t.shape.size(); ++i) {
      if (i != 0) header += ',';
      header += std::to_string(t.shape[i]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';  // keeps the data 8-byte aligned
  std::ofstream out(path, std::ios::binary);
  if (!out) throw ddm::io_error("ddm_export_peer_data: cannot open '" + path + "' for writing");
  std::uint64_t n = header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xFF);  // little-endian
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const tensor& t : tensors) out.write(t.bytes.data(), static_cast<std::streamsize>(t.bytes.size()));
  if (!out) throw ddm::io_error("ddm_export_peer_data: writing '" + path + "' failed");
}

std::vector<tensor> model_tensors(const ddm::synthetic::analytic_ddm& model) {
  const auto j = static_cast<std::int64_t>(model.num_components());
  const auto d = static_cast<std::int64_t>(model.dim());
  const auto k_count = model.num_clusters();
  const ddm::synthetic::mixture_view whole = model.view();
  std::vector<double> cluster_log_weights;
  for (std::size_t k = 0; k < k_count; ++k) {
    const auto v = model.cluster_view(k);
    cluster_log_weights.insert(cluster_log_weights.end(), v.log_weights, v.log_weights + v.components);
  }
  std::vector<std::int64_t> begin(model.cluster_begin().begin(), model.cluster_begin().end());
  return {f64("means", {j, d}, whole.means, static_cast<std::size_t>(j * d)),
          f64("scales", {j}, whole.scales, static_cast<std::size_t>(j)),
          f64("log_weights", {j}, whole.log_weights, static_cast<std::size_t>(j)),
          f64("log_cluster_weights", {j}, cluster_log_weights.data(), cluster_log_weights.size()),
          i64("cluster_begin", begin)};
}

std::string metadata(int k, index_t d) {
  return "\"K\":\"" + std::to_string(k) + "\",\"D\":\"" + std::to_string(d) +
         "\",\"components_per_cluster\":\"4\",\"tau\":\"1\",\"steps\":\"8\",\"schedule\":\"uniform\"";
}

void export_check(const std::string& dir, int k, index_t b, index_t d) {
  const auto model = ddm::bench::analytic_model(k, d);
  std::vector<tensor> out = model_tensors(model);
  ddm::batch<double> noise(b, d);
  ddm::fill_normal(ddm::host_context{}, noise.view(), 2026);
  out.push_back(f64("noise", {b, d}, noise.data(), static_cast<std::size_t>(b * d)));
  const auto schedule = ddm::schedules::uniform(8);
  for (const std::string s : {ddm::euler::name(), ddm::dpmpp_2m::name()})
    for (const std::string p : {"top1", "top2", "full"}) {
      ddm::batch<double> x(b, d);
      ddm::copy(ddm::host_context{}, x.view(), noise);
      auto field = ddm::make_routed_field<double>(model.experts(), model.router(1.0),
                                                  ddm::bench::make_policy(p));
      ddm::bench::with_solver(s, [&](const auto& integ) { (void)ddm::sample(field, x, schedule, integ); });
      out.push_back(f64("sample/" + s + "/" + p, {b, d},
                        x.data(), static_cast<std::size_t>(b * d)));
    }
  const std::string path = dir + "/check_K" + std::to_string(k) + "_B" + std::to_string(b) + "_D" + std::to_string(d) +
                           ".safetensors";
  write_safetensors(path, out, metadata(k, d));
  std::printf("wrote %s\n", path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output directory>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  try {
    const int k = 8;
    for (index_t d : {64, 1024, 16384, 65536}) {
      const std::string path = dir + "/model_K" + std::to_string(k) + "_D" + std::to_string(d) + ".safetensors";
      write_safetensors(path, model_tensors(ddm::bench::analytic_model(k, d)), metadata(k, d));
      std::printf("wrote %s\n", path.c_str());
    }
    export_check(dir, k, 256, 64);
    export_check(dir, k, 64, 1024);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
