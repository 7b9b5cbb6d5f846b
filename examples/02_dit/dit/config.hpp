#pragma once
// Configurations of the three networks: the original DiT (Peebles & Xie), the Paris-style expert
// (adaLN-single with cross-attention to text) and the DiT router with a CLS token.
//
// One shape for the three: transformer_config holds what they share, each model adds its own.
// Structural sizes are read off a checkpoint's tensor shapes (the *_config_from_checkpoint
// functions of dit/checkpoint.hpp); the head count and the LayerNorm epsilon cannot be, and come
// from the checkpoint's metadata, a config.json, the caller, or (Paris) the defaults here.

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include <ddm/core/checked.hpp>
#include <ddm/core/error.hpp>

#include "dit/backend.hpp"

namespace dit {

/// The largest structural size (a width, a channel count, a patch, a depth, a text length) a
/// configuration may have: the host backend passes sizes to the BLAS as int, and a bound on each
/// factor keeps every product of two of them inside index_t. The sizes come from checkpoint
/// shapes and config.json files, which are input like any other.
inline constexpr index_t max_dimension = std::numeric_limits<int>::max();

/// `v` as a structural size: an argument_error naming `where`, `name` and the value unless it lies
/// in [1, max_dimension].
inline void require_dimension(const char* where, const char* name, index_t v) {
  if (v <= 0 || v > max_dimension) ddm::fail_argument(where, name, v, "in [1, 2147483647]");
}

/// The mlp_ratio that gives an MLP of `width` at `hidden`: mlp_hidden() truncates hidden * ratio
/// as PyTorch's int(hidden * mlp_ratio) does, and width / hidden times hidden can land one ulp
/// below width (hidden 352, width 480 gives 479.99999999999994), so the quotient is nudged up
/// until the product truncates back to width. 0 for sizes outside [1, max_dimension], which
/// validate() then refuses.
[[nodiscard]] inline double mlp_ratio_for(index_t width, index_t hidden) {
  // Past max_dimension the quotient would not be exact enough for the loop below to end (a width
  // of 2^63 - 1 never truncates back to itself).
  if (hidden <= 0 || width <= 0 || hidden > max_dimension || width > max_dimension) return 0.0;
  double r = static_cast<double>(width) / static_cast<double>(hidden);
  while (static_cast<index_t>(static_cast<double>(hidden) * r) < width)
    r = std::nextafter(r, std::numeric_limits<double>::infinity());
  return r;
}

/// What the three networks share: a patch-embedded square latent, `depth` blocks of `num_heads`-head
/// self-attention and an MLP of hidden_size x mlp_ratio, sinusoidal timestep features. The model
/// configurations below extend it; `*_config_from_checkpoint` (dit/checkpoint.hpp) read it off a
/// checkpoint's shapes, except num_heads and layer_norm_eps, which shapes cannot reveal.
struct transformer_config {
  index_t input_size = 32;  ///< latent height = width
  index_t patch_size = 2;
  index_t in_channels = 4;
  index_t hidden_size = 1152;
  index_t depth = 28;
  index_t num_heads = 16;
  double mlp_ratio = 4.0;
  double layer_norm_eps = 1e-6;  ///< the blocks' affine-free LayerNorms
  index_t frequency_size = 256;

  [[nodiscard]] index_t mlp_hidden() const noexcept {
    return static_cast<index_t>(static_cast<double>(hidden_size) * mlp_ratio);
  }
  [[nodiscard]] patch_geometry geometry() const noexcept {
    return {in_channels, input_size, input_size, patch_size};
  }
  [[nodiscard]] index_t tokens() const noexcept { return geometry().tokens(); }
  /// Values per sample of the input latent (C*H*W).
  [[nodiscard]] index_t input_values() const noexcept { return in_channels * input_size * input_size; }

 protected:
  /// The checks every network needs; `out_channels` is the output's channel count.
  void validate_transformer(const char* where, index_t out_channels) const {
    require_dimension(where, "input_size", input_size);
    require_dimension(where, "patch_size", patch_size);
    require_dimension(where, "in_channels", in_channels);
    require_dimension(where, "hidden_size", hidden_size);
    require_dimension(where, "depth", depth);
    require_dimension(where, "num_heads", num_heads);
    require_dimension(where, "out_channels", out_channels);
    if (input_size % patch_size != 0)
      throw ddm::argument_error(
          ddm::concat(where, ": input_size ", input_size, " is not a multiple of patch_size ", patch_size));
    if (hidden_size % num_heads != 0)
      throw ddm::argument_error(
          ddm::concat(where, ": hidden_size ", hidden_size, " is not divisible by num_heads ", num_heads));
    if (!(mlp_ratio > 0) || !(static_cast<double>(hidden_size) * mlp_ratio >= 1.0) ||
        !(static_cast<double>(hidden_size) * mlp_ratio < static_cast<double>(max_dimension) + 1.0))
      ddm::fail_argument(where, "mlp_ratio", mlp_ratio, "> 0, with hidden_size x mlp_ratio in [1, 2147483647]");
    if (!(layer_norm_eps > 0)) ddm::fail_argument(where, "layer_norm_eps", layer_norm_eps, "> 0");
    if (frequency_size <= 0 || frequency_size > max_dimension || frequency_size % 2 != 0)
      ddm::fail_argument(where, "frequency_size", frequency_size, "a positive even number");
    // The products of three sizes the models form (values per image, patch values); products of
    // two cannot overflow once each factor is bounded.
    (void)ddm::checked_size(where, "in_channels x input_size x input_size", in_channels, input_size, input_size);
    (void)ddm::checked_size(where, "in_channels x patch_size x patch_size", in_channels, patch_size, patch_size);
    (void)ddm::checked_size(where, "out_channels x input_size x input_size", out_channels, input_size, input_size);
    (void)ddm::checked_size(where, "out_channels x patch_size x patch_size", out_channels, patch_size, patch_size);
  }
};

/// The original class-conditional DiT (facebookresearch/DiT, models.py). Defaults: DiT-XL/2 at
/// 256 px with 1000 classes.
struct dit_config : transformer_config {
  index_t num_classes = 1000;
  bool null_class = true;    ///< the label table has a row num_classes for "no class" (class_dropout_prob > 0)
  bool learn_sigma = true;   ///< 2 * in_channels outputs: eps, then the variance interpolation

  [[nodiscard]] index_t out_channels() const noexcept { return learn_sigma ? 2 * in_channels : in_channels; }
  [[nodiscard]] index_t label_rows() const noexcept { return num_classes + (null_class ? 1 : 0); }
  /// Values per sample of the full output (C_out*H*W).
  [[nodiscard]] index_t output_values() const noexcept { return out_channels() * input_size * input_size; }

  /// Multiply-accumulates of one forward of one sample: patch embedding, timestep MLP, per block
  /// the adaLN product, qkv, scores and values, projection and MLP, and the final layer (adaLN and
  /// linear). 118.62 G for DiT-XL/2 and 23.01 G for DiT-B/2 at 256 px, the DiT paper's "Gflops".
  [[nodiscard]] double forward_macs() const noexcept {
    const double d = double(hidden_size), t = double(tokens()), h = double(mlp_hidden());
    const double p2 = double(patch_size * patch_size);
    const double block = 6 * d * d + t * (3 * d * d + 2 * t * d + d * d + 2 * d * h);
    return t * d * double(in_channels) * p2 + (double(frequency_size) * d + d * d) + double(depth) * block +
           2 * d * d + t * d * p2 * double(out_channels());
  }

  /// Values in a checkpoint of this configuration, the fixed pos_embed included (it is stored).
  [[nodiscard]] std::int64_t parameter_count() const noexcept {
    const std::int64_t d = hidden_size;
    const std::int64_t h = mlp_hidden();
    const std::int64_t p2 = patch_size * patch_size;
    const std::int64_t block = (6 * d * d + 6 * d) + (3 * d * d + 3 * d) + (d * d + d) + (h * d + h) + (d * h + d);
    return (d * in_channels * p2 + d) + tokens() * d + (frequency_size * d + d + d * d + d) + label_rows() * d +
           depth * block + (2 * d * d + 2 * d) + (p2 * out_channels() * d + p2 * out_channels());
  }

  void validate() const {
    validate_transformer("dit::dit_config", out_channels());
    require_dimension("dit::dit_config", "num_classes", num_classes);
  }

  /// "DiT-S/2" ... "DiT-XL/8": the configurations of the DiT paper (S, B, L, XL; patch 2, 4, 8).
  [[nodiscard]] static dit_config preset(std::string_view name) {
    dit_config c;
    struct size {
      std::string_view tag;
      index_t depth, hidden, heads;
    };
    constexpr size sizes[] = {{"XL", 28, 1152, 16}, {"L", 24, 1024, 16}, {"B", 12, 768, 12}, {"S", 12, 384, 6}};
    if (name.substr(0, 4) == "DiT-") {
      const auto rest = name.substr(4);
      const auto slash = rest.find('/');
      if (slash != std::string_view::npos) {
        const auto tag = rest.substr(0, slash);
        const auto patch = rest.substr(slash + 1);
        for (const auto& s : sizes) {
          if (s.tag == tag && (patch == "2" || patch == "4" || patch == "8")) {
            c.depth = s.depth;
            c.hidden_size = s.hidden;
            c.num_heads = s.heads;
            c.patch_size = patch[0] - '0';
            return c;
          }
        }
      }
    }
    throw ddm::argument_error(ddm::concat("dit::dit_config::preset: argument 'name' = ", name,
                                                  ", expected DiT-{S,B,L,XL}/{2,4,8}"));
  }
};

/// The Paris-style expert: adaLN-single (one shared t_block, a per-block scale_shift_table),
/// self-attention, cross-attention to projected text embeddings, MLP; predicts velocity. Defaults:
/// the released Paris expert (DiT-XL/2 sizes).
struct paris_expert_config : transformer_config {
  index_t out_channels = 4;
  index_t text_dim = 768;    ///< width of the text-encoder states (CLIP ViT-L/14)
  index_t text_length = 77;  ///< tokens per prompt

  /// LayerNorm eps 1e-5: F.layer_norm's default, which the only public port uses; PixArt-alpha
  /// itself uses 1e-6.
  paris_expert_config() { layer_norm_eps = 1e-5; }

  [[nodiscard]] index_t text_values() const noexcept { return text_length * text_dim; }
  [[nodiscard]] index_t output_values() const noexcept { return out_channels * input_size * input_size; }

  void validate() const {
    validate_transformer("dit::paris_expert_config", out_channels);
    require_dimension("dit::paris_expert_config", "text_dim", text_dim);
    require_dimension("dit::paris_expert_config", "text_length", text_length);
    (void)ddm::checked_size("dit::paris_expert_config", "text_length x text_dim", text_length, text_dim);
  }
};

/// The DiT router: adaLN-Zero blocks over [CLS; patch tokens], an MLP head on the CLS output
/// giving one logit per expert. Conditioned on the noisy latent and the timestep only. Defaults:
/// the released Paris router (DiT-B/2 sizes).
struct router_config : transformer_config {
  index_t num_experts = 8;
  double head_layer_norm_eps = 1e-5;  ///< the head's nn.LayerNorm

  /// DiT-B/2 sizes; the blocks' LayerNorms use F.layer_norm's default eps, 1e-5.
  router_config() {
    hidden_size = 768;
    depth = 12;
    num_heads = 12;
    layer_norm_eps = 1e-5;
  }

  void validate() const {
    validate_transformer("dit::router_config", 1);
    require_dimension("dit::router_config", "num_experts", num_experts);
    if (!(head_layer_norm_eps > 0))
      ddm::fail_argument("dit::router_config", "head_layer_norm_eps", head_layer_norm_eps, "> 0");
  }
};

}  // namespace dit
