#pragma once
// The tensor names of each checkpoint layout, one table per network, for the pieces every DiT has
// (patch embedding, position table, timestep embedder, the attention + MLP blocks, the output
// Linear). The model constructors load those pieces through the table and the configuration
// readers (dit/checkpoint.hpp) read sizes off the same names, so a layout is written down once.
// Tensors only one network has (the DiT's label table, the Paris expert's cross-attention, the
// router's CLS token and head) are named where that network loads them.

#include <string>
#include <string_view>

namespace dit {

struct tensor_names {
  std::string_view model;         ///< the network's name in messages
  std::string_view patch_embed;   ///< Conv2d(C, D, p, p): <>.weight (D, C, p, p), <>.bias (D)
  std::string_view pos_embed;     ///< (1, T, D), T = (input_size / p)^2
  std::string_view time_embed;    ///< Sequential(Linear(256, D), SiLU, Linear(D, D)): <>.0.*, <>.2.*
  std::string_view block;         ///< block i's tensors start with <>i.
  std::string_view qkv_weight;    ///< fused (3D, D), within a block
  std::string_view qkv_bias;      ///< (3D)
  std::string_view attn_proj;     ///< Linear(D, D) prefix
  std::string_view fc1;           ///< Linear(D, mlp) prefix: its rows give the MLP width
  std::string_view fc2;           ///< Linear(mlp, D) prefix
  std::string_view block_probe;   ///< a tensor every block has (within a block): counts the depth
  std::string_view output;        ///< the last Linear: rows = p*p*C_out (experts) or K (router)

  /// Block i's tensor `name` ("blocks.3.attn.qkv.weight").
  [[nodiscard]] std::string in_block(long long i, std::string_view name) const {
    return std::string(block) + std::to_string(i) + "." + std::string(name);
  }
  [[nodiscard]] static std::string join(std::string_view prefix, std::string_view leaf) {
    return std::string(prefix) + "." + std::string(leaf);
  }
};

/// facebookresearch/DiT models.py, the state_dict saved as is.
inline constexpr tensor_names original_dit_names{
    "DiT",        "x_embedder.proj", "pos_embed", "t_embedder.mlp",       "blocks.",
    "attn.qkv.weight", "attn.qkv.bias", "attn.proj", "mlp.fc1", "mlp.fc2", "adaLN_modulation.1.weight",
    "final_layer.linear"};

/// The Paris-style expert of the public Paris port (nn.MultiheadAttention layers).
inline constexpr tensor_names paris_expert_names{
    "Paris expert", "patch_embed", "pos_embed", "time_embed.mlp",       "layers.",
    "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj", "mlp.0", "mlp.2", "scale_shift_table",
    "final_layer.linear"};

/// The DiT router of the same port.
inline constexpr tensor_names paris_router_names{
    "DiT router", "patch_embed", "pos_embed", "time_embed.mlp",       "layers.",
    "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj", "mlp.0", "mlp.2", "adaLN_modulation.1.weight",
    "head.4"};

}  // namespace dit
