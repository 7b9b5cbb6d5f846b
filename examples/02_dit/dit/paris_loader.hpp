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
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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

// The text of a folder's config.json, or nothing when the folder has none.
inline std::optional<std::string> read_config_json(const std::filesystem::path& file) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto status = fs::status(file, ec);
  if (status.type() == fs::file_type::not_found) return std::nullopt;
  if (ec || status.type() != fs::file_type::regular)
    throw ddm::io_error(ddm::concat("dit::load_paris: '", file.string(), "' is not a regular file",
                                            ec ? " (" + ec.message() + ")" : std::string(), ", expected a JSON object"));
  std::ifstream in(file, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof())
    throw ddm::io_error(ddm::concat("dit::load_paris: '", file.string(), "' cannot be read"));
  return text;
}

// The keys of a config.json (its text; `label` names it in messages) that shapes cannot supply;
// missing keys change nothing.
inline void apply_config_json(std::string_view text, const std::string& label, index_t& heads, double& eps,
                              index_t* text_length) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw ddm::io_error(ddm::concat("dit::load_paris: '", label, "' is not valid JSON: ", e.what()));
  }
  if (!j.is_object())
    throw ddm::io_error(ddm::concat("dit::load_paris: '", label, "' is a JSON ", j.type_name(),
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
      throw ddm::io_error(ddm::concat("dit::load_paris: '", label, "': '", key, "' = ", it->dump(),
                                              ", expected an integer in [1, ", max_dimension, "]"));
    out = static_cast<index_t>(it->get<std::int64_t>());
    return true;
  };
  if (!read_int("num_heads", heads)) read_int("num_attention_heads", heads);
  if (j.contains("layer_norm_eps")) {
    if (!j["layer_norm_eps"].is_number() || !(j["layer_norm_eps"].get<double>() > 0))
      throw ddm::io_error(ddm::concat("dit::load_paris: '", label, "': 'layer_norm_eps' = ",
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

/// The configuration of one Paris-style expert: the structural sizes read off `file`'s shapes, the
/// rest from `options`, overridden by `config_json` (the text of the expert folder's config.json,
/// named `config_label` in messages; nothing when the folder has none). What load_paris does for
/// each expert, for files held in memory.
[[nodiscard]] inline paris_expert_config paris_expert_config_of(const ddm::io::safetensors_file& file,
                                                                const std::optional<std::string>& config_json,
                                                                const std::string& config_label,
                                                                const paris_options& options = {}) {
  paris_expert_config base;
  base.num_heads = options.expert_heads;
  base.layer_norm_eps = options.expert_layer_norm_eps;
  base.text_length = options.text_length;
  if (config_json)
    detail::apply_config_json(*config_json, config_label, base.num_heads, base.layer_norm_eps, &base.text_length);
  return paris_expert_config_from(file, base);
}

/// The router's configuration, likewise (its config.json has no text length).
[[nodiscard]] inline router_config paris_router_config_of(const ddm::io::safetensors_file& file,
                                                          const std::optional<std::string>& config_json,
                                                          const std::string& config_label,
                                                          const paris_options& options = {}) {
  router_config base;
  base.num_heads = options.router_heads;
  base.layer_norm_eps = options.router_layer_norm_eps;
  if (config_json) detail::apply_config_json(*config_json, config_label, base.num_heads, base.layer_norm_eps, nullptr);
  return router_config_from(file, base);
}

/// Loads every expert_k (k = 0, 1, ... while the folder exists) and the router of `dir` into the
/// memory of `ctx` (device memory for ddm::cuda_space, with dit/backend_cuda.cuh).
template <class Space = ddm::host_space>
[[nodiscard]] paris_checkpoint<Space> load_paris(const std::filesystem::path& dir, const paris_options& options = {},
                                                 const ddm::execution_context<Space>& ctx = {}) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir))
    throw ddm::io_error(ddm::concat("dit::load_paris: '", dir.string(), "' is not a directory"));
  paris_checkpoint<Space> out;
  for (int k = 0;; ++k) {
    const fs::path sub = dir / ("expert_" + std::to_string(k));
    if (!fs::is_directory(sub)) break;
    const fs::path weights = sub / "diffusion_pytorch_model.safetensors";
    if (!fs::exists(weights))
      throw ddm::io_error(ddm::concat("dit::load_paris: '", weights.string(), "' is missing"));
    const fs::path config_path = sub / "config.json";
    const auto config_json = detail::read_config_json(config_path);
    const ddm::io::safetensors_file file(weights);
    const auto config = paris_expert_config_of(file, config_json, config_path.string(), options);
    if (k == 0) {
      out.expert_config = config;
    } else if (!detail::same_structure(config, out.expert_config)) {
      throw ddm::io_error(ddm::concat("dit::load_paris: '", weights.string(),
                                              "' does not have the configuration of expert_0 (every expert of a "
                                              "folder must share one architecture)"));
    }
    out.experts.push_back(
        std::make_shared<const paris_expert<Space>>(config, file, options.strict, ctx, options.storage));
  }
  if (out.experts.empty())
    throw ddm::io_error(ddm::concat("dit::load_paris: '", dir.string(),
                                            "' has no expert_0 folder, expected expert_0, expert_1, ... and router"));
  const fs::path router_weights = dir / "router" / "pytorch_model.safetensors";
  if (!fs::exists(router_weights))
    throw ddm::io_error(ddm::concat("dit::load_paris: '", router_weights.string(), "' is missing"));
  const fs::path router_config_path = dir / "router" / "config.json";
  const auto router_json = detail::read_config_json(router_config_path);
  const ddm::io::safetensors_file rfile(router_weights);
  out.router_config = paris_router_config_of(rfile, router_json, router_config_path.string(), options);
  if (out.router_config.num_experts != static_cast<index_t>(out.experts.size()))
    throw ddm::io_error(ddm::concat("dit::load_paris: '", router_weights.string(), "' scores ",
                                            out.router_config.num_experts, " experts but '", dir.string(), "' holds ",
                                            out.experts.size(), " (expert_0 ... expert_", out.experts.size() - 1, ")"));
  out.router = std::make_shared<const dit_router_model<Space>>(out.router_config, rfile, options.strict, ctx,
                                                               options.storage);
  return out;
}

}  // namespace dit
