#pragma once
// The DiT router of a DDM (McAllister et al.; Paris): a DiT-B-style network over the noisy
// latent and the timestep, with a learned CLS token whose output an MLP head maps to one logit
// per expert. Module names follow the public Paris port.
//
//   x = [cls_token; patch_embed(x) + pos_embed]                 (B*(T+1), D)   (no position for CLS)
//   t_emb = time_embed(t)
//   per layer (adaLN-Zero): shift/scale/gate x2 = adaLN_modulation(t_emb) = Linear(SiLU(t_emb))
//     x += gate_msa * Attn(LN(x) (1 + scale_msa) + shift_msa)
//     x += gate_mlp * MLP(LN(x) (1 + scale_mlp) + shift_mlp)
//   logits = head(x[CLS]) = Linear -> GELU_tanh -> LayerNorm (affine) -> GELU_tanh -> Linear(D, K)

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <ddm/core/algebra.hpp>
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
class dit_router_model {
 public:
  using context = ddm::execution_context<Space>;

  dit_router_model(const router_config& config, const ddm::io::safetensors_file& file, bool strict = true,
                   const context& ctx = {}, weight_storage storage = weight_storage::f32)
      : config_(config) {
    config_.validate();
    weight_reader<Space> r(file, ctx, storage);
    const index_t d = config_.hidden_size;
    const auto u = weight_reader<Space>::u;
    const auto& names = paris_router_names;
    stem_ = stem_weights<Space>::load(r, names, config_);
    cls_token_ = r.tensor("cls_token", {1, 1, u(d)}, 1, d);
    layers_.reserve(static_cast<std::size_t>(config_.depth));
    for (index_t i = 0; i < config_.depth; ++i) layers_.push_back(adaln_zero_block<Space>::load(r, names, i, config_));
    head0_ = r.linear("head.0", d, d);
    head_norm_weight_ = r.tensor("head.2.weight", {u(d)}, 1, d);
    head_norm_bias_ = r.tensor("head.2.bias", {u(d)}, 1, d);
    head4_ = r.linear("head.4", config_.num_experts, d);
    if (strict) r.require_all_used(std::string(names.model));
  }

  [[nodiscard]] static std::shared_ptr<const dit_router_model> load(const std::filesystem::path& path,
                                                                    const router_config& config, bool strict = true,
                                                                    const context& ctx = {},
                                                                    weight_storage storage = weight_storage::f32) {
    const ddm::io::safetensors_file file(path);
    return std::make_shared<const dit_router_model>(config, file, strict, ctx, storage);
  }

  [[nodiscard]] const router_config& config() const noexcept { return config_; }
  [[nodiscard]] index_t input_values() const noexcept { return config_.input_values(); }

  /// x (B, C*H*W); t: B model timesteps (sigma * 1000 in Paris); logits (B, K).
  void forward(const context& ctx, batch_view<const float, Space> x, std::span<const float> t,
               batch_view<float, Space> logits, workspace<Space>& ws, const stage_hook<Space>* hook = nullptr) const {
    using ops = backend<Space>;
    const char* where = "dit::dit_router_model::forward";
    const index_t b = x.rows();
    const index_t d = config_.hidden_size;
    const index_t tokens = config_.tokens();
    const index_t seq = tokens + 1;
    ddm::require_shape(where, "x", x, b, input_values());
    ddm::require_shape(where, "logits", logits, b, config_.num_experts);
    if (static_cast<index_t>(t.size()) != b)
      throw ddm::shape_error(ddm::concat(where, ": ", t.size(), " timesteps for a batch of ", b,
                                                 ", expected one per sample"));
    if (b == 0) return;
    auto record = [&](std::string_view name, batch_view<float, Space> v) {
      if (hook != nullptr && *hook) (*hook)(name, v.as_const());
    };

    auto patches = ws.get(slot::model + 5, b * tokens, d);
    stem_.embed(ctx, x, ws, patches);
    record("x_embed", patches);
    // Sequence of each sample: row 0 the CLS token, rows 1..T the patches.
    auto xs = ws.get(slot::model, b * seq, d);
    for (index_t s = 0; s < b; ++s) {
      ddm::copy(ctx, xs.subrows(s * seq, 1), cls_token_.cview());
      ddm::copy(ctx, xs.subrows(s * seq + 1, tokens), patches.subrows(s * tokens, tokens));
    }

    auto temb = ws.get(slot::model + 1, b, d);
    stem_.time_embed.forward(ctx, t, ws, temb);
    record("t_emb", temb);
    auto st = ws.get(slot::model + 2, b, d);
    ops::silu(ctx, temb, st);

    auto mod = ws.get(slot::model + 3, b, 6 * d);
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      layers_[i].forward(ctx, xs, b, config_, st, mod, ws);
      record("block." + std::to_string(i), xs);
    }

    // The CLS rows: every seq-th row of xs.
    const batch_view<const float, Space> cls(xs.data(), b, d, seq * d);
    record("cls", batch_view<float, Space>(xs.data(), b, d, seq * d));
    auto h = ws.get(slot::normed, b, d);
    ops::linear(ctx, cls, head0_.view(), head0_.bias_data(), h);
    ops::gelu_tanh(ctx, h, h);
    ops::layer_norm(ctx, h, config_.head_layer_norm_eps, head_norm_weight_.data(), head_norm_bias_.data(), h);
    ops::gelu_tanh(ctx, h, h);
    ops::linear(ctx, h, head4_.view(), head4_.bias_data(), logits);
    record("logits", logits);
  }

 private:
  router_config config_;
  stem_weights<Space> stem_;
  batch<float, Space> cls_token_;
  std::vector<adaln_zero_block<Space>> layers_;
  linear_weights<Space> head0_;
  batch<float, Space> head_norm_weight_;
  batch<float, Space> head_norm_bias_;
  linear_weights<Space> head4_;
};

}  // namespace dit
