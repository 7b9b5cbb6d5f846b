#pragma once
// Loading a Paris-layout DDM checkpoint folder:
//
//   <dir>/expert_0/diffusion_pytorch_model.safetensors   (+ optional config.json)
//   <dir>/expert_1/...                                   ... as many as there are, from 0 up
//   <dir>/router/pytorch_model.safetensors               (+ optional config.json)
//
// Structural sizes (width, depth, patch, channels, text width, number of experts) are read off
// the tensor shapes. What shapes cannot tell -- head counts, LayerNorm epsilons, the text length
// -- comes from a folder's config.json when it has "num_heads" (or "num_attention_heads"),
// "layer_norm_eps" and "text_length" (or "max_text_length"), else from the checkpoint's metadata,
// else from paris_options (defaults: the released Paris model); see dit/checkpoint.hpp. All
// experts must share one configuration, and the router must score exactly as many experts as the
// folder holds.

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ddm/core/error.hpp>
#include <ddm/io/safetensors.hpp>

#include "dit/checkpoint.hpp"
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

/// Whether two expert configurations are the same architecture (every expert of a folder must be).
[[nodiscard]] inline bool same_structure(const paris_expert_config& a, const paris_expert_config& b) {
  return a.input_size == b.input_size && a.patch_size == b.patch_size && a.in_channels == b.in_channels &&
         a.out_channels == b.out_channels && a.hidden_size == b.hidden_size && a.depth == b.depth &&
         a.num_heads == b.num_heads && a.mlp_ratio == b.mlp_ratio && a.text_dim == b.text_dim &&
         a.text_length == b.text_length && a.layer_norm_eps == b.layer_norm_eps;
}

/// The hyperparameters of `options` as the fallback of the checkpoint readers (a head count or a
/// text length of 0 gives none, so that it must come from the folder).
[[nodiscard]] inline hyperparameters expert_fallback(const paris_options& o) {
  hyperparameters h;
  if (o.expert_heads > 0) h.num_heads = o.expert_heads;
  h.layer_norm_eps = o.expert_layer_norm_eps;
  if (o.text_length > 0) h.text_length = o.text_length;
  return h;
}

[[nodiscard]] inline hyperparameters router_fallback(const paris_options& o) {
  hyperparameters h;
  if (o.router_heads > 0) h.num_heads = o.router_heads;
  h.layer_norm_eps = o.router_layer_norm_eps;
  return h;
}

/// The configuration of one Paris-style expert: the structural sizes read off `file`'s shapes, the
/// rest from `config_json` (the text of the expert folder's config.json, named `config_label` in
/// messages; nothing when the folder has none), then the file's metadata, then `options`. What
/// load_paris does for each expert, for files held in memory.
[[nodiscard]] inline paris_expert_config paris_expert_config_of(const ddm::io::safetensors_file& file,
                                                                const std::optional<std::string>& config_json,
                                                                const std::string& config_label,
                                                                const paris_options& options = {}) {
  const hyperparameters given = config_json ? hyperparameters_from_json(*config_json, config_label) : hyperparameters{};
  return paris_expert_config_from_checkpoint(file, given, expert_fallback(options));
}

/// The router's configuration, likewise (a text length in its config.json is not used).
[[nodiscard]] inline router_config paris_router_config_of(const ddm::io::safetensors_file& file,
                                                          const std::optional<std::string>& config_json,
                                                          const std::string& config_label,
                                                          const paris_options& options = {}) {
  const hyperparameters given = config_json ? hyperparameters_from_json(*config_json, config_label) : hyperparameters{};
  return router_config_from_checkpoint(file, given, router_fallback(options));
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
    const auto config_json = read_config_json(config_path);
    const ddm::io::safetensors_file file(weights);
    const auto config = paris_expert_config_of(file, config_json, config_path.string(), options);
    if (k == 0) {
      out.expert_config = config;
    } else if (!same_structure(config, out.expert_config)) {
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
  const auto router_json = read_config_json(router_config_path);
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
