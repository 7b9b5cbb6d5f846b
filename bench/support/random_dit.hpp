#pragma once
// A DiT expert with random weights for the DiT benchmarks: uniform(-1/sqrt(in), 1/sqrt(in))
// (PyTorch's Linear default), written through the safetensors writer and read back like a real
// checkpoint. Built once per shape (hidden size, depth, input size) and kept.

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <ddm/io/safetensors.hpp>
#include <ddm/io/safetensors_writer.hpp>

#include "dit/dit_model.hpp"

namespace ddm::bench {

inline std::shared_ptr<const dit::dit_model<>> random_dit_model(const dit::dit_config& c) {
  static std::map<std::string, std::shared_ptr<const dit::dit_model<>>> cache;
  const std::string key = std::to_string(c.hidden_size) + "/" + std::to_string(c.depth) + "/" +
                          std::to_string(c.input_size);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  ddm::io::safetensors_writer w;
  std::mt19937 gen(42);
  for (const auto& [name, shape] : dit::dit_model<>::checkpoint_layout(c)) {
    std::uint64_t n = 1;
    for (const auto s : shape) n *= s;
    const double fan_in = shape.size() >= 2 ? double(n / shape[0]) : double(c.hidden_size);
    std::uniform_real_distribution<float> u(-1.0f / std::sqrt(float(fan_in)), 1.0f / std::sqrt(float(fan_in)));
    std::vector<float> v(n);
    for (auto& x : v) x = u(gen);
    w.add(name, shape, v);
  }
  const auto file = ddm::io::safetensors_file::from_bytes(w.to_bytes(), "random " + key);
  auto model = std::make_shared<const dit::dit_model<>>(c, file);
  cache[key] = model;
  return model;
}

}  // namespace ddm::bench
