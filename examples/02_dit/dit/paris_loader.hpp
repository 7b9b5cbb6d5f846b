#pragma once
// Loading a Paris-layout DDM checkpoint folder:
//
//   <dir>/expert_0/diffusion_pytorch_model.safetensors   (+ optional config.json)
//   <dir>/expert_1/...                                   ... as many as there are, from 0 up
//   <dir>/router/pytorch_model.safetensors               (+ optional config.json)
//
// Structural sizes (width, depth, patch, channels, text width, number of experts) are read off
// the tensor shapes. What shapes cannot tell -- head counts, LayerNorm epsilons, the text length
// -- comes from paris_options (defaults: the released Paris model), overridden by a folder's
// config.json when it has "num_heads" (or "num_attention_heads"), "layer_norm_eps" and
// "text_length" (or "max_text_length"). All experts must share one configuration, and the
// router must score exactly as many experts as the folder holds.

#include <cstdint>
#include <filesystem>
#include <system_error>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <ddm/core/error.hpp>
#include <ddm/io/safetensors.hpp>

#include "dit/config.hpp"
#include "dit/dit_router.hpp"
#include "dit/paris_expert.hpp"

namespace dit {

struct paris_options {
  index_t expert_heads = 16;        ///< DiT-XL/2: 16 heads of 72
  index_t router_heads = 12;        ///< DiT-B/2: 12 heads of 64
  double expert_layer_norm_eps = 1e-5;
  double router_layer_norm_eps = 1e-5;
  index_t text_length = 77;         ///< CLIP's context length
  bool strict = true;               ///< unused tensors in a checkpoint are an error
  /// How the matrices of Linear layers are kept (bf16 / f16: device backends only; 2.4 GB of float
  /// per DiT-XL/2 expert, 1.2 GB in bf16).
  weight_storage storage = weight_storage::f32;
};

template <class Space = ddm::host_space>
struct paris_checkpoint {
  std::vector<std::shared_ptr<const paris_expert<Space>>> experts;
  std::shared_ptr<const dit_router_model<Space>> router;
  dit::paris_expert_config expert_config;
  dit::router_config router_config;
};

namespace detail {

// The keys of a folder's config.json that shapes cannot supply; missing file or keys change nothing.
inline void apply_config_json(const std::filesystem::path& file, index_t& heads, double& eps, index_t* text_length) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(file, ec);
  if (status.type() == fs::file_type::not_found) return;
  if (ec || status.type() != fs::file_type::regular)
    throw ddm::io_error(ddm::detail::concat("dit::load_paris: '", file.string(), "' is not a regular file",
                                            ec ? " (" + ec.message() + ")" : std::string(), ", expected a JSON object"));
  std::ifstream in(file);
  if (!in)
    throw ddm::io_error(ddm::detail::concat("dit::load_paris: '", file.string(), "' cannot be opened"));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ddm::io_error(ddm::detail::concat("dit::load_paris: '", file.string(), "' is not valid JSON: ", e.what()));
  }
  if (!j.is_object())
    throw ddm::io_error(ddm::detail::concat("dit::load_paris: '", file.string(), "' is a JSON ", j.type_name(),
                                            ", expected an object"));
  // Integers are sizes of the model: checked against max_dimension here, before text_values()
  // or anything else multiplies them ("text_length": 2^60 once overflowed into a null memcpy).
  auto read_int = [&](const char* key, index_t& out) {
    const auto it = j.find(key);
    if (it == j.end()) return false;
    const bool in_range = (it->is_number_unsigned() && it->get<std::uint64_t>() >= 1 &&
                           it->get<std::uint64_t>() <= static_cast<std::uint64_t>(max_dimension)) ||
                          (it->is_number_integer() && !it->is_number_unsigned() && it->get<std::int64_t>() >= 1 &&
                           it->get<std::int64_t>() <= max_dimension);
    if (!in_range)
      throw ddm::io_error(ddm::detail::concat("dit::load_paris: '", file.string(), "': '", key, "' = ", it->dump(),
                                              ", expected an integer in [1, ", max_dimension, "]"));
    out = static_cast<index_t>(it->get<std::int64_t>());
    return true;
  };
  if (!read_int("num_heads", heads)) read_int("num_attention_heads", heads);
  if (j.contains("layer_norm_eps")) {
    if (!j["layer_norm_eps"].is_number() || !(j["layer_norm_eps"].get<double>() > 0))
      throw ddm::io_error(ddm::detail::concat("dit::load_paris: '", file.string(), "': 'layer_norm_eps' = ",
                                              j["layer_norm_eps"].dump(), ", expected a number > 0"));
    eps = j["layer_norm_eps"].get<double>();
  }
  if (text_length != nullptr && !read_int("text_length", *text_length)) read_int("max_text_length", *text_length);
}

inline bool same_structure(const paris_expert_config& a, const paris_expert_config& b) {
  return a.input_size == b.input_size && a.patch_size == b.patch_size && a.in_channels == b.in_channels &&
         a.out_channels == b.out_channels && a.hidden_size == b.hidden_size && a.depth == b.depth &&
         a.num_heads == b.num_heads && a.mlp_ratio == b.mlp_ratio && a.text_dim == b.text_dim &&
         a.text_length == b.text_length && a.layer_norm_eps == b.layer_norm_eps;
}

}  // namespace detail

/// Loads every expert_k (k = 0, 1, ... while the folder exists) and the router of `dir` into the
/// memory of `ctx` (device memory for ddm::cuda_space, with dit/backend_cuda.cuh).
template <class Space = ddm::host_space>
[[nodiscard]] paris_checkpoint<Space> load_paris(const std::filesystem::path& dir, const paris_options& options = {},
                                                 const ddm::execution_context<Space>& ctx = {}) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir))
    throw ddm::io_error(ddm::detail::concat("dit::load_paris: '", dir.string(), "' is not a directory"));
  paris_checkpoint<Space> out;
  for (int k = 0;; ++k) {
    const fs::path sub = dir / ("expert_" + std::to_string(k));
    if (!fs::is_directory(sub)) break;
    const fs::path weights = sub / "diffusion_pytorch_model.safetensors";
    if (!fs::exists(weights))
      throw ddm::io_error(ddm::detail::concat("dit::load_paris: '", weights.string(), "' is missing"));
    paris_expert_config base;
    base.num_heads = options.expert_heads;
    base.layer_norm_eps = options.expert_layer_norm_eps;
    base.text_length = options.text_length;
    detail::apply_config_json(sub / "config.json", base.num_heads, base.layer_norm_eps, &base.text_length);
    const ddm::io::safetensors_file file(weights);
    const auto config = paris_expert_config_from(file, base);
    if (k == 0) {
      out.expert_config = config;
    } else if (!detail::same_structure(config, out.expert_config)) {
      throw ddm::io_error(ddm::detail::concat("dit::load_paris: '", weights.string(),
                                              "' does not have the configuration of expert_0 (every expert of a "
                                              "folder must share one architecture)"));
    }
    out.experts.push_back(
        std::make_shared<const paris_expert<Space>>(config, file, options.strict, ctx, options.storage));
  }
  if (out.experts.empty())
    throw ddm::io_error(ddm::detail::concat("dit::load_paris: '", dir.string(),
                                            "' has no expert_0 folder, expected expert_0, expert_1, ... and router"));
  const fs::path router_weights = dir / "router" / "pytorch_model.safetensors";
  if (!fs::exists(router_weights))
    throw ddm::io_error(ddm::detail::concat("dit::load_paris: '", router_weights.string(), "' is missing"));
  router_config rbase;
  rbase.num_heads = options.router_heads;
  rbase.layer_norm_eps = options.router_layer_norm_eps;
  detail::apply_config_json(dir / "router" / "config.json", rbase.num_heads, rbase.layer_norm_eps, nullptr);
  const ddm::io::safetensors_file rfile(router_weights);
  out.router_config = router_config_from(rfile, rbase);
  if (out.router_config.num_experts != static_cast<index_t>(out.experts.size()))
    throw ddm::io_error(ddm::detail::concat("dit::load_paris: '", router_weights.string(), "' scores ",
                                            out.router_config.num_experts, " experts but '", dir.string(), "' holds ",
                                            out.experts.size(), " (expert_0 ... expert_", out.experts.size() - 1, ")"));
  out.router = std::make_shared<const dit_router_model<Space>>(out.router_config, rfile, options.strict, ctx,
                                                               options.storage);
  return out;
}

}  // namespace dit
