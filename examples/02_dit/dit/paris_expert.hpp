#pragma once
// The Paris-style text-conditioned expert (PixArt-alpha's adaLN-single with the module names of
// the public Paris port; see docs/dit.md for the sources and what is not confirmed).
//
//   x = patch_embed(x) + pos_embed                              (B*T, D)
//   t_emb = time_embed(t); t0 = t_block(t_emb) = Linear(SiLU(t_emb))   (B, D), (B, 6D)
//   text = text_proj(text_states)                               (B*L, D)
//   per layer: shift/scale/gate x2 = scale_shift_table (6, D) + t0, in that order
//     x += gate_msa * SelfAttn(LN(x) (1 + scale_msa) + shift_msa)
//     x += CrossAttn(q = x, k = v = text)                        (no norm, no gate)
//     x += gate_mlp * MLP(LN(x) (1 + scale_mlp) + shift_mlp)
//   final: shift, scale = final_layer.scale_shift_table (2, D) + t_emb   (t_emb, not t0)
//          Linear(LN(x) (1 + scale) + shift); unpatchify              -> velocity
// Attention layers are nn.MultiheadAttention: in_proj_weight (3D, D), in_proj_bias, out_proj.

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <ddm/core/batch.hpp>
#include <ddm/core/checked.hpp>
#include <ddm/core/error.hpp>
#include <ddm/io/safetensors.hpp>

#include "dit/backend.hpp"
#include "dit/config.hpp"
#include "dit/layers.hpp"
#include "dit/weights.hpp"

namespace dit {

/// The structural sizes of a Paris-style expert read off its checkpoint's shapes. The head count,
/// the LayerNorm epsilon and the text length are not in the shapes: they are taken from `base`.
[[nodiscard]] inline paris_expert_config paris_expert_config_from(const ddm::io::safetensors_file& file,
                                                                  paris_expert_config base = {}) {
  const auto& pe = file.info("patch_embed.weight").shape;
  const auto& pos = file.info("pos_embed").shape;
  const auto& text = file.info("text_proj.weight").shape;
  const auto& fc1 = file.info("layers.0.mlp.0.weight").shape;
  const auto& fin = file.info("final_layer.linear.weight").shape;
  if (pe.size() != 4 || pos.size() != 3 || text.size() != 2 || fc1.size() != 2 || fin.size() != 2 || pe[2] != pe[3])
    throw ddm::io_error(ddm::concat("ddm::io::safetensors: '", file.label(),
                                            "': the tensor shapes are not those of a Paris-style expert"));
  // Every size is checked before it is used: patch_embed.weight (32, 4, 0, 0) is a valid empty
  // tensor whose patch would divide by zero below.
  base.hidden_size = shape_size(file, "patch_embed.weight", 0, "hidden size (axis 0)");
  base.in_channels = shape_size(file, "patch_embed.weight", 1, "input channels (axis 1)");
  base.patch_size = shape_size(file, "patch_embed.weight", 2, "patch size (axis 2)");
  const index_t tokens = shape_size(file, "pos_embed", 1, "token count (axis 1)");
  const auto grid = static_cast<index_t>(std::llround(std::sqrt(static_cast<double>(tokens))));
  base.input_size = ddm::checked_size("dit::paris_expert_config_from", "grid x patch_size", grid, base.patch_size);
  base.text_dim = shape_size(file, "text_proj.weight", 1, "text width (axis 1)");
  base.mlp_ratio = detail::mlp_ratio_for(shape_size(file, "layers.0.mlp.0.weight", 0, "MLP width (axis 0)"),
                                         base.hidden_size);
  const index_t patch_values = ddm::checked_size("dit::paris_expert_config_from", "patch_size x patch_size",
                                                 base.patch_size, base.patch_size);
  base.out_channels = shape_size(file, "final_layer.linear.weight", 0, "output values per patch (axis 0)") / patch_values;
  base.depth = count_blocks(file, "layers.", ".scale_shift_table");
  return base;
}

template <class Space = ddm::host_space>
class paris_expert {
 public:
  using context = ddm::execution_context<Space>;

  paris_expert(const paris_expert_config& config, const ddm::io::safetensors_file& file, bool strict = true,
               const context& ctx = {}, weight_storage storage = weight_storage::f32)
      : config_(config) {
    config_.validate();
    weight_reader<Space> r(file, ctx, storage);
    const index_t d = config_.hidden_size;
    const auto u = weight_reader<Space>::u;
    patch_embed_ = patch_embedder<Space>::load(r, "patch_embed.weight", "patch_embed.bias", config_.geometry(), d);
    pos_embed_ = load_pos_embed(r, "pos_embed", config_.tokens(), d, config_.input_size / config_.patch_size, false);
    time_embed_ = timestep_embedder<Space>::load(r, "time_embed.mlp", d, config_.frequency_size);
    text_proj_ = r.linear("text_proj", d, config_.text_dim);
    t_block_ = r.linear("t_block.1", 6 * d, d);
    layers_.reserve(static_cast<std::size_t>(config_.depth));
    for (index_t i = 0; i < config_.depth; ++i) {
      const std::string p = "layers." + std::to_string(i) + ".";
      layer l;
      l.table = r.tensor(p + "scale_shift_table", {6, u(d)}, 1, 6 * d);
      l.layers.qkv = r.linear_named(p + "attn.in_proj_weight", p + "attn.in_proj_bias", 3 * d, d);
      l.layers.proj = r.linear(p + "attn.out_proj", d, d);
      l.cross_in = r.linear_named(p + "cross_attn.in_proj_weight", p + "cross_attn.in_proj_bias", 3 * d, d);
      l.cross_out = r.linear(p + "cross_attn.out_proj", d, d);
      l.layers.fc1 = r.linear(p + "mlp.0", config_.mlp_hidden(), d);
      l.layers.fc2 = r.linear(p + "mlp.2", d, config_.mlp_hidden());
      layers_.push_back(std::move(l));
    }
    final_table_ = r.tensor("final_layer.scale_shift_table", {2, u(d)}, 2, d);
    final_linear_ =
        r.linear("final_layer.linear", config_.patch_size * config_.patch_size * config_.out_channels, d);
    if (strict) r.require_all_used("Paris expert");
  }

  [[nodiscard]] static std::shared_ptr<const paris_expert> load(const std::filesystem::path& path,
                                                                const paris_expert_config& config,
                                                                bool strict = true, const context& ctx = {},
                                                                weight_storage storage = weight_storage::f32) {
    const ddm::io::safetensors_file file(path);
    return std::make_shared<const paris_expert>(config, file, strict, ctx, storage);
  }

  [[nodiscard]] const paris_expert_config& config() const noexcept { return config_; }
  [[nodiscard]] index_t input_values() const noexcept {
    return config_.in_channels * config_.input_size * config_.input_size;
  }
  [[nodiscard]] index_t output_values() const noexcept {
    return config_.out_channels * config_.input_size * config_.input_size;
  }

  /// x (B, C*H*W); t: B model timesteps (sigma * 1000 in Paris); text (B, L*text_dim) text-encoder
  /// states (CLIP last_hidden_state, one prompt per row); out (B, C_out*H*W) velocity.
  void forward(const context& ctx, batch_view<const float, Space> x, std::span<const float> t,
               batch_view<const float, Space> text, batch_view<float, Space> out, workspace<Space>& ws,
               const stage_hook<Space>* hook = nullptr) const {
    using ops = backend<Space>;
    const char* where = "dit::paris_expert::forward";
    const index_t b = x.rows();
    const index_t d = config_.hidden_size;
    const index_t tokens = config_.tokens();
    ddm::require_shape(where, "x", x, b, input_values());
    ddm::require_shape(where, "text", text, b, config_.text_values());
    ddm::require_shape(where, "out", out, b, output_values());
    if (static_cast<index_t>(t.size()) != b)
      throw ddm::shape_error(ddm::concat(where, ": ", t.size(), " timesteps for a batch of ", b,
                                                 ", expected one per sample"));
    if (b == 0) return;
    auto record = [&](std::string_view name, batch_view<float, Space> v) {
      if (hook != nullptr && *hook) (*hook)(name, v.as_const());
    };

    auto xs = ws.get(slot::model, b * tokens, d);
    patch_embed_.forward(ctx, x, ws, xs);
    add_pos_embed(ctx, xs, b, pos_embed_);
    record("x_embed", xs);

    auto temb = ws.get(slot::model + 1, b, d);
    time_embed_.forward(ctx, t, ws, temb);
    record("t_emb", temb);
    auto st = ws.get(slot::model + 2, b, d);
    ops::silu(ctx, temb, st);
    auto t0 = ws.get(slot::model + 3, b, 6 * d);
    ops::linear(ctx, st, t_block_.view(), t_block_.bias_data(), t0);
    record("t0", t0);

    // (B, L*text_dim) viewed as (B*L, text_dim): each prompt's tokens are consecutive rows.
    if (!text.is_contiguous())
      throw ddm::argument_error(ddm::concat(where, ": argument 'text' must be contiguous"));
    const batch_view<const float, Space> text_tokens(text.data(), b * config_.text_length, config_.text_dim);
    auto txt = ws.get(slot::model + 4, b * config_.text_length, d);
    ops::linear(ctx, text_tokens, text_proj_.view(), text_proj_.bias_data(), txt);
    record("text_proj", txt);

    auto mod = ws.get(slot::model + 5, b, 6 * d);
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      const auto& l = layers_[i];
      ops::add_row_vector(ctx, t0, l.table.cview(), mod);
      const auto m = mod.as_const();
      attention_residual(ctx, xs, b, config_.num_heads, config_.layer_norm_eps, chunk(m, 0, d), chunk(m, 1, d),
                         chunk(m, 2, d), l.layers.qkv, l.layers.proj, ws);
      cross_attention_residual(ctx, xs, txt.as_const(), b, config_.num_heads, l.cross_in, l.cross_out, ws);
      mlp_residual(ctx, xs, config_.layer_norm_eps, chunk(m, 3, d), chunk(m, 4, d), chunk(m, 5, d), l.layers.fc1,
                   l.layers.fc2, ws);
      record("block." + std::to_string(i), xs);
    }

    auto fmod = ws.get(slot::model + 5, b, 2 * d);
    const auto table = final_table_.cview();
    ops::add_row_vector(ctx, temb, table.subrows(0, 1), chunk(fmod, 0, d));
    ops::add_row_vector(ctx, temb, table.subrows(1, 1), chunk(fmod, 1, d));
    auto h = ws.get(slot::normed, b * tokens, d);
    ops::layer_norm_modulate(ctx, xs, config_.layer_norm_eps, chunk(fmod.as_const(), 0, d),
                             chunk(fmod.as_const(), 1, d), h);
    auto patches = ws.get(slot::hidden, b * tokens, final_linear_.out());
    ops::linear(ctx, h, final_linear_.view(), final_linear_.bias_data(), patches);
    record("final", patches);
    ops::unpatchify(ctx, patches, config_.geometry(), config_.out_channels, out);
    record("output", out);
  }

 private:
  struct layer {
    batch<float, Space> table;  // (1, 6D)
    attention_mlp_weights<Space> layers;
    linear_weights<Space> cross_in;
    linear_weights<Space> cross_out;
  };

  paris_expert_config config_;
  patch_embedder<Space> patch_embed_;
  batch<float, Space> pos_embed_;
  timestep_embedder<Space> time_embed_;
  linear_weights<Space> text_proj_;
  linear_weights<Space> t_block_;
  std::vector<layer> layers_;
  batch<float, Space> final_table_;  // (2, D)
  linear_weights<Space> final_linear_;
};

}  // namespace dit
