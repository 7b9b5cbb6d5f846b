#pragma once
// The original class-conditional DiT (Peebles & Xie, facebookresearch/DiT models.py), loaded
// from a checkpoint with the original key names (x_embedder.proj.weight, blocks.N.attn.qkv.weight,
// ...; the .pt state_dict converted to safetensors as is).
//
//   x = PatchEmbed(x) + pos_embed; c = TimestepEmbedder(t) + LabelEmbedder(y)
//   per block (adaLN-Zero): shift/scale/gate x2 = Linear(SiLU(c)) chunked in that order
//     x += gate_msa * Attn(LN(x) (1 + scale_msa) + shift_msa)
//     x += gate_mlp * MLP(LN(x) (1 + scale_mlp) + shift_mlp)
//   FinalLayer: shift, scale = Linear(SiLU(c)); Linear(LN(x) (1 + scale) + shift); unpatchify
//
// The output has 2C channels with learn_sigma (eps, then the variance interpolation), C without.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <ddm/core/algebra.hpp>
#include <ddm/core/batch.hpp>
#include <ddm/core/error.hpp>
#include <ddm/io/safetensors.hpp>

#include "dit/backend.hpp"
#include "dit/config.hpp"
#include "dit/layers.hpp"
#include "dit/weights.hpp"

namespace dit {

template <class Space = ddm::host_space>
class dit_model {
 public:
  using context = ddm::execution_context<Space>;

  /// Loads every tensor the configuration needs from `file`. pos_embed is taken from the file
  /// when present and computed otherwise. With `strict`, unused tensors are an error.
  /// Matrices of Linear layers are kept in `storage` (bf16 / f16: device backends only).
  dit_model(const dit_config& config, const ddm::io::safetensors_file& file, bool strict = true,
            const context& ctx = {}, weight_storage storage = weight_storage::f32)
      : config_(config) {
    config_.validate();
    weight_reader<Space> r(file, ctx, storage);
    const index_t d = config_.hidden_size;
    const auto u = weight_reader<Space>::u;
    const auto& names = original_dit_names;
    stem_ = stem_weights<Space>::load(r, names, config_);
    labels_ = r.tensor("y_embedder.embedding_table.weight", {u(config_.label_rows()), u(d)}, config_.label_rows(), d);
    blocks_.reserve(static_cast<std::size_t>(config_.depth));
    for (index_t i = 0; i < config_.depth; ++i) blocks_.push_back(adaln_zero_block<Space>::load(r, names, i, config_));
    final_adaln_ = r.linear("final_layer.adaLN_modulation.1", 2 * d, d);
    final_linear_ = r.linear("final_layer.linear", config_.patch_size * config_.patch_size * config_.out_channels(), d);
    if (strict) r.require_all_used(std::string(names.model));
  }

  /// Opens `path` and loads it (see the constructor).
  [[nodiscard]] static std::shared_ptr<const dit_model> load(const std::filesystem::path& path,
                                                             const dit_config& config, bool strict = true,
                                                             const context& ctx = {},
                                                             weight_storage storage = weight_storage::f32) {
    const ddm::io::safetensors_file file(path);
    return std::make_shared<const dit_model>(config, file, strict, ctx, storage);
  }

  /// The name and shape of every tensor a checkpoint of `config` holds (pos_embed included), in
  /// the original key names: for converting, checking or synthesizing checkpoints.
  [[nodiscard]] static std::vector<std::pair<std::string, std::vector<std::uint64_t>>> checkpoint_layout(
      const dit_config& config) {
    using u = std::uint64_t;
    const u d = static_cast<u>(config.hidden_size);
    const u h = static_cast<u>(config.mlp_hidden());
    const u p = static_cast<u>(config.patch_size);
    const auto& n = original_dit_names;
    auto leaf = tensor_names::join;
    std::vector<std::pair<std::string, std::vector<u>>> out{
        {leaf(n.patch_embed, "weight"), {d, static_cast<u>(config.in_channels), p, p}},
        {leaf(n.patch_embed, "bias"), {d}},
        {std::string(n.pos_embed), {1, static_cast<u>(config.tokens()), d}},
        {leaf(n.time_embed, "0.weight"), {d, static_cast<u>(config.frequency_size)}},
        {leaf(n.time_embed, "0.bias"), {d}},
        {leaf(n.time_embed, "2.weight"), {d, d}},
        {leaf(n.time_embed, "2.bias"), {d}},
        {"y_embedder.embedding_table.weight", {static_cast<u>(config.label_rows()), d}}};
    for (index_t i = 0; i < config.depth; ++i) {
      auto in_block = [&](std::string_view name) { return n.in_block(i, name); };
      out.push_back({in_block("adaLN_modulation.1.weight"), {6 * d, d}});
      out.push_back({in_block("adaLN_modulation.1.bias"), {6 * d}});
      out.push_back({in_block(n.qkv_weight), {3 * d, d}});
      out.push_back({in_block(n.qkv_bias), {3 * d}});
      out.push_back({in_block(leaf(n.attn_proj, "weight")), {d, d}});
      out.push_back({in_block(leaf(n.attn_proj, "bias")), {d}});
      out.push_back({in_block(leaf(n.fc1, "weight")), {h, d}});
      out.push_back({in_block(leaf(n.fc1, "bias")), {h}});
      out.push_back({in_block(leaf(n.fc2, "weight")), {d, h}});
      out.push_back({in_block(leaf(n.fc2, "bias")), {d}});
    }
    const u final_out = p * p * static_cast<u>(config.out_channels());
    out.push_back({"final_layer.adaLN_modulation.1.weight", {2 * d, d}});
    out.push_back({"final_layer.adaLN_modulation.1.bias", {2 * d}});
    out.push_back({leaf(n.output, "weight"), {final_out, d}});
    out.push_back({leaf(n.output, "bias"), {final_out}});
    return out;
  }

  [[nodiscard]] const dit_config& config() const noexcept { return config_; }
  /// Values per sample of the input latent (C*H*W).
  [[nodiscard]] index_t input_values() const noexcept { return config_.input_values(); }
  /// Values per sample of the full output (C_out*H*W).
  [[nodiscard]] index_t output_values() const noexcept { return config_.output_values(); }

  /// x (B, C*H*W) NCHW latents; t: B model timesteps (0..999 for the DDPM-trained checkpoints);
  /// y: B class labels in [0, num_classes), or num_classes (also -1) for the null class;
  /// out (B, keep*H*W) receives the first `keep` output channels (all of them by default).
  void forward(const context& ctx, batch_view<const float, Space> x, std::span<const float> t,
               std::span<const std::int32_t> y, batch_view<float, Space> out, workspace<Space>& ws,
               index_t keep = -1, const stage_hook<Space>* hook = nullptr) const {
    using ops = backend<Space>;
    const index_t b = x.rows();
    const index_t d = config_.hidden_size;
    const index_t tokens = config_.tokens();
    if (keep < 0) keep = config_.out_channels();
    check_(x, t, y, out, keep);
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
    std::vector<std::int32_t> labels(y.begin(), y.end());
    for (auto& l : labels)
      if (l == -1 && config_.null_class) l = static_cast<std::int32_t>(config_.num_classes);
    auto c = ws.get(slot::model + 2, b, d);
    ops::gather_rows(ctx, labels_.cview(), labels, c);
    ddm::lincomb(ctx, c, {1.0, 1.0}, c, temb);
    record("c", c);
    // adaLN_modulation = Sequential(SiLU, Linear): SiLU(c) is shared by every block.
    auto sc = ws.get(slot::model + 3, b, d);
    ops::silu(ctx, c, sc);

    auto mod = ws.get(slot::model + 4, b, 6 * d);
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      blocks_[i].forward(ctx, xs, b, config_, sc, mod, ws);
      record("block." + std::to_string(i), xs);
    }

    auto fmod = ws.get(slot::model + 4, b, 2 * d);
    ops::linear(ctx, sc, final_adaln_.view(), final_adaln_.bias_data(), fmod);
    auto h = ws.get(slot::normed, b * tokens, d);
    ops::layer_norm_modulate(ctx, xs, config_.layer_norm_eps, chunk(fmod.as_const(), 0, d),
                             chunk(fmod.as_const(), 1, d), h);
    auto patches = ws.get(slot::hidden, b * tokens, final_linear_.out());
    ops::linear(ctx, h, final_linear_.view(), final_linear_.bias_data(), patches);
    record("final", patches);
    ops::unpatchify(ctx, patches, config_.geometry(), keep, out);
    record("output", out);
  }

 private:
  void check_(batch_view<const float, Space> x, std::span<const float> t, std::span<const std::int32_t> y,
              batch_view<float, Space> out, index_t keep) const {
    const char* where = "dit::dit_model::forward";
    ddm::require_shape(where, "x", x, x.rows(), input_values());
    if (static_cast<index_t>(t.size()) != x.rows() || static_cast<index_t>(y.size()) != x.rows())
      throw ddm::shape_error(ddm::concat(where, ": ", t.size(), " timesteps and ", y.size(),
                                                 " labels for a batch of ", x.rows(), ", expected one each per sample"));
    if (keep <= 0 || keep > config_.out_channels())
      ddm::fail_argument(where, "keep", keep, "a channel count in [1, out_channels]");
    ddm::require_shape(where, "out", out, x.rows(), keep * config_.input_size * config_.input_size);
    for (std::size_t i = 0; i < y.size(); ++i) {
      const bool null_label = config_.null_class && (y[i] == -1 || y[i] == config_.num_classes);
      if (!null_label && (y[i] < 0 || y[i] >= config_.num_classes))
        throw ddm::argument_error(ddm::concat(where, ": label ", y[i], " of sample ", i, ", expected [0, ",
                                                      config_.num_classes, ")",
                                                      config_.null_class ? " or the null class (-1 or num_classes)" : ""));
    }
  }

  dit_config config_;
  stem_weights<Space> stem_;
  batch<float, Space> labels_;
  std::vector<adaln_zero_block<Space>> blocks_;
  linear_weights<Space> final_adaln_;
  linear_weights<Space> final_linear_;
};

}  // namespace dit
