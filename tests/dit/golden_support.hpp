#pragma once
// Comparing a C++ model stage by stage against the PyTorch goldens of tests/dit/golden.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <ddm/io/safetensors.hpp>

#include "dit/backend.hpp"
#include "dit/config.hpp"

#ifndef DDM_DIT_FIXTURES
#error "DDM_DIT_FIXTURES must name the tests/dit/golden directory"
#endif

namespace dit_test {

/// A file under tests/dit/golden: the directory compiled in, or $DDM_DIT_FIXTURES when set (test
/// binaries built on one machine and run on another, as bench/run_gpu_checks.sh does).
inline std::filesystem::path fixture(const std::string& relative) {
  const char* dir = std::getenv("DDM_DIT_FIXTURES");
  return std::filesystem::path(dir != nullptr && *dir != '\0' ? dir : DDM_DIT_FIXTURES) / relative;
}

inline nlohmann::json config_of(const ddm::io::safetensors_file& golden) {
  return nlohmann::json::parse(golden.metadata().at("config"));
}

inline dit::dit_config dit_config_of(const nlohmann::json& j) {
  dit::dit_config c;
  c.input_size = j.at("input_size").get<decltype(c.input_size)>();
  c.patch_size = j.at("patch_size").get<decltype(c.patch_size)>();
  c.in_channels = j.at("in_channels").get<decltype(c.in_channels)>();
  c.hidden_size = j.at("hidden_size").get<decltype(c.hidden_size)>();
  c.depth = j.at("depth").get<decltype(c.depth)>();
  c.num_heads = j.at("num_heads").get<decltype(c.num_heads)>();
  c.mlp_ratio = j.at("mlp_ratio").get<decltype(c.mlp_ratio)>();
  c.num_classes = j.at("num_classes").get<decltype(c.num_classes)>();
  c.null_class = j.at("null_class").get<decltype(c.null_class)>();
  c.learn_sigma = j.at("learn_sigma").get<decltype(c.learn_sigma)>();
  return c;
}

inline dit::paris_expert_config paris_config_of(const nlohmann::json& j) {
  dit::paris_expert_config c;
  c.input_size = j.at("input_size").get<decltype(c.input_size)>();
  c.patch_size = j.at("patch_size").get<decltype(c.patch_size)>();
  c.in_channels = j.at("in_channels").get<decltype(c.in_channels)>();
  c.out_channels = j.at("out_channels").get<decltype(c.out_channels)>();
  c.hidden_size = j.at("hidden_size").get<decltype(c.hidden_size)>();
  c.depth = j.at("depth").get<decltype(c.depth)>();
  c.num_heads = j.at("num_heads").get<decltype(c.num_heads)>();
  c.mlp_ratio = j.at("mlp_ratio").get<decltype(c.mlp_ratio)>();
  c.text_dim = j.at("text_dim").get<decltype(c.text_dim)>();
  c.text_length = j.at("text_length").get<decltype(c.text_length)>();
  c.layer_norm_eps = j.at("layer_norm_eps").get<decltype(c.layer_norm_eps)>();
  return c;
}

inline dit::router_config router_config_of(const nlohmann::json& j) {
  dit::router_config c;
  c.input_size = j.at("input_size").get<decltype(c.input_size)>();
  c.patch_size = j.at("patch_size").get<decltype(c.patch_size)>();
  c.in_channels = j.at("in_channels").get<decltype(c.in_channels)>();
  c.hidden_size = j.at("hidden_size").get<decltype(c.hidden_size)>();
  c.depth = j.at("depth").get<decltype(c.depth)>();
  c.num_heads = j.at("num_heads").get<decltype(c.num_heads)>();
  c.mlp_ratio = j.at("mlp_ratio").get<decltype(c.mlp_ratio)>();
  c.num_experts = j.at("num_experts").get<decltype(c.num_experts)>();
  c.layer_norm_eps = j.at("layer_norm_eps").get<decltype(c.layer_norm_eps)>();
  c.head_layer_norm_eps = j.at("head_layer_norm_eps").get<decltype(c.head_layer_norm_eps)>();
  return c;
}

/// Records every stage a forward pass reports (host memory).
struct stage_recorder {
  std::map<std::string, std::vector<float>> stages;
  dit::stage_hook<ddm::host_space> hook() {
    return [this](std::string_view name, ddm::batch_view<const float> v) {
      auto& out = stages[std::string(name)];
      out.clear();
      for (ddm::index_t r = 0; r < v.rows(); ++r) out.insert(out.end(), v.row(r), v.row(r) + v.cols());
    };
  }
};

struct agreement {
  double max_abs = 0;
  double cosine = 1;
};

inline agreement compare(const std::vector<float>& got, const std::vector<float>& want) {
  agreement a;
  double dot = 0, ng = 0, nw = 0;
  for (std::size_t i = 0; i < got.size() && i < want.size(); ++i) {
    a.max_abs = std::max(a.max_abs, std::abs(static_cast<double>(got[i]) - want[i]));
    dot += static_cast<double>(got[i]) * want[i];
    ng += static_cast<double>(got[i]) * got[i];
    nw += static_cast<double>(want[i]) * want[i];
  }
  a.cosine = (ng == 0 && nw == 0) ? 1.0 : dot / std::sqrt(ng * nw);
  return a;
}

/// Every "stage.*" tensor of the golden file must have been recorded, with the same number of
/// values, within 1e-4 max abs error and cosine >= 0.9999; and the C++ side records no stage
/// the golden lacks.
inline void expect_stages_match(const ddm::io::safetensors_file& golden, const stage_recorder& rec,
                                const std::string& model) {
  std::size_t compared = 0;
  for (const auto& t : golden.tensors()) {
    if (t.name.rfind("stage.", 0) != 0) continue;
    const std::string stage = t.name.substr(6);
    const auto it = rec.stages.find(stage);
    ASSERT_NE(it, rec.stages.end()) << model << ": the C++ forward did not report stage '" << stage << "'";
    const auto want = golden.read<float>(t.name);
    ASSERT_EQ(it->second.size(), want.size()) << model << ": stage '" << stage << "' has the wrong size";
    const auto a = compare(it->second, want);
    std::printf("[ measured ] %-9s %-10s max |C++ - PyTorch| = %.2e  cosine = %.9f\n", model.c_str(), stage.c_str(),
                a.max_abs, a.cosine);
    EXPECT_LE(a.max_abs, 1e-4) << model << " stage " << stage;
    EXPECT_GE(a.cosine, 0.9999) << model << " stage " << stage;
    ++compared;
  }
  for (const auto& [name, values] : rec.stages)
    EXPECT_TRUE(golden.contains("stage." + name)) << model << ": stage '" << name << "' has no golden";
  EXPECT_GT(compared, 3u);
}

}  // namespace dit_test
