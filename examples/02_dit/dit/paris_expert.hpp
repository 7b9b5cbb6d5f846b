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
    const auto& names = paris_expert_names;
    stem_ = stem_weights<Space>::load(r, names, config_);
    text_proj_ = r.linear("text_proj", d, config_.text_dim);
    t_block_ = r.linear("t_block.1", 6 * d, d);
    layers_.reserve(static_cast<std::size_t>(config_.depth));
    for (index_t i = 0; i < config_.depth; ++i) {
      layer l;
      l.table = r.tensor(names.in_block(i, "scale_shift_table"), {6, u(d)}, 1, 6 * d);
      l.layers = attention_mlp_weights<Space>::load(r, names, i, config_);
      l.cross_in = r.linear_named(names.in_block(i, "cross_attn.in_proj_weight"),
                                  names.in_block(i, "cross_attn.in_proj_bias"), 3 * d, d);
      l.cross_out = r.linear(names.in_block(i, "cross_attn.out_proj"), d, d);
      layers_.push_back(std::move(l));
    }
    final_table_ = r.tensor("final_layer.scale_shift_table", {2, u(d)}, 2, d);
    final_linear_ =
        r.linear("final_layer.linear", config_.patch_size * config_.patch_size * config_.out_channels, d);
    if (strict) r.require_all_used(std::string(names.model));
  }

  [[nodiscard]] static std::shared_ptr<const paris_expert> load(const std::filesystem::path& path,
                                                                const paris_expert_config& config,
                                                                bool strict = true, const context& ctx = {},
                                                                weight_storage storage = weight_storage::f32) {
    const ddm::io::safetensors_file file(path);
    return std::make_shared<const paris_expert>(config, file, strict, ctx, storage);
  }

  [[nodiscard]] const paris_expert_config& config() const noexcept { return config_; }
  [[nodiscard]] index_t input_values() const noexcept { return config_.input_values(); }
  [[nodiscard]] index_t output_values() const noexcept { return config_.output_values(); }

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
    stem_.embed(ctx, x, ws, xs);
    record("x_embed", xs);

    auto temb = ws.get(slot::model + 1, b, d);
    stem_.time_embed.forward(ctx, t, ws, temb);
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
  stem_weights<Space> stem_;
  linear_weights<Space> text_proj_;
  linear_weights<Space> t_block_;
  std::vector<layer> layers_;
  batch<float, Space> final_table_;  // (2, D)
  linear_weights<Space> final_linear_;
};

}  // namespace dit
